"""Which metric a run is judged by, and which way is better: one rule for early stopping, the
learning-rate schedule, the best checkpoint, the value `main()` returns and a sweep's direction."""

from __future__ import annotations

# Metrics where higher is better; every other metric (losses, errors) is minimised.
HIGHER_IS_BETTER = ("accuracy", "auc", "f1", "precision", "recall", "r2")


def default_metric(task: str, validation: bool = True) -> str:
    """The metric a task is judged by when none is configured: its validation metric, or the
    training loss where there is no validation split (as dl-4-tsc trains on the UCR archive)."""
    if not validation:
        return "loss"
    return "val_accuracy" if task == "classification" else "val_loss"


def direction(metric: str) -> str:
    """ "max" for accuracy-like metrics, "min" for losses and errors."""
    name = metric.removeprefix("val_").removeprefix("test_").removeprefix("final_")
    return "max" if any(word in name for word in HIGHER_IS_BETTER) else "min"


def monitored(configured: str | None, task: str, validation: bool = True) -> tuple[str, str]:
    """(metric, "max" or "min"): `configured` when set, else the task's default metric
    (`validation`: whether the data has a validation split)."""
    metric = configured or default_metric(task, validation)
    return metric, direction(metric)


def check_sweepable(data_cfg) -> None:
    """Refuse a sweep over data without a validation split (`data.val_fraction=0`): its
    trials are compared on one."""
    from pipeline.config.errors import ConfigError

    if getattr(data_cfg, "val_fraction", None) == 0:
        raise ConfigError(
            "A sweep compares its trials on the validation split, and `data.val_fraction=0` "
            "leaves none. Hold one out for the sweep (for example `data.val_fraction=0.2`); a "
            "preset may train on every training example once the sweep has chosen its settings."
        )


def check_monitorable(metrics: dict[str, str | None], validation: bool) -> None:
    """Refuse a configured `val_*` metric (config key -> metric) when there is no validation
    split, before any run opens."""
    from pipeline.config.errors import ConfigError

    for key, metric in metrics.items():
        if metric and metric.startswith("val_") and not validation:
            raise ConfigError(
                f"`{key}={metric}` watches the validation split, and `data.val_fraction=0` "
                f"leaves none. Set `{key}={metric.removeprefix('val_')}` (the training "
                "split's), or hold out a validation split with `data.val_fraction` above 0."
            )
