"""Which metric a run is judged by, and which way is better: one rule for early stopping, the
learning-rate schedule, the best checkpoint, the value `main()` returns and a sweep's direction."""

from __future__ import annotations

# Metrics where higher is better; every other metric (losses, errors) is minimised.
HIGHER_IS_BETTER = ("accuracy", "auc", "f1", "precision", "recall", "r2")


def default_metric(task: str) -> str:
    """The validation metric a task is judged by when none is configured."""
    return "val_accuracy" if task == "classification" else "val_loss"


def direction(metric: str) -> str:
    """ "max" for accuracy-like metrics, "min" for losses and errors."""
    name = metric.removeprefix("val_").removeprefix("test_").removeprefix("final_")
    return "max" if any(word in name for word in HIGHER_IS_BETTER) else "min"


def monitored(configured: str | None, task: str) -> tuple[str, str]:
    """(metric, "max" or "min"): `configured` when set, else the task's validation metric."""
    metric = configured or default_metric(task)
    return metric, direction(metric)
