"""The summary printed at the end of a run: what was trained, on what, how well, and where the
run is in MLflow."""

from __future__ import annotations

from pipeline.config import Config
from pipeline.tracking.store import ui_command

BASELINES = ("_persistence", "_seasonal_naive", "_mase")


def run_summary(conf: Config, result) -> str:
    """The summary of one finished run (`pipeline.training.run.TrainResult`)."""
    metrics, sizes = result.metrics, result.sizes
    tests = "  ".join(
        f"{k.removeprefix('test_')}={v:.4f}"
        for k, v in metrics.items()
        if k.startswith("test_") and not k.endswith(BASELINES)  # those get their own line
    )
    lines = [
        "",
        "== run summary ==",
        f"model       {result.model_name}: {conf.model.cell} x{conf.model.num_layers}, "
        f"{conf.model.units} units, {metrics['num_params']:,} parameters",
        f"data        {conf.data.name}: {sizes['train']} train / {sizes.get('val', 0)} val / {sizes['test']} test",
        f"epochs      {metrics['epochs_trained']} (best epoch {metrics['best_epoch'] + 1})",
        f"test        {tests}",
        *baselines_line(metrics),
        f"wall time   {metrics['wall_seconds']:.1f} s (fit {metrics['fit_seconds']:.1f} s)",
        f"MLflow run  {result.run_id} (experiment {conf.tracking.experiment_name})",
        f"browse      {ui_command(result.uri)}",
    ]
    if conf.tracking.log_model:  # the next step, with this run's model (docs/predict.md)
        lines.append(
            f"predict     python -m pipeline.predict model=runs:/{result.run_id}/model input=FILE"
        )
    return "\n".join(lines)


def baselines_line(metrics: dict) -> list[str]:
    """Forecasting runs: the model's test RMSE against persistence and seasonal naive, with MASE
    (none for other runs)."""
    if "test_rmse_persistence" not in metrics:
        return []
    model = metrics["test_rmse"]

    def versus(name: str, baseline: float) -> str:
        ratio = f"{model / baseline:.2f}x" if baseline > 0 else "n/a"
        return f"{name} {baseline:.4g} ({ratio})"

    parts = [versus("persistence", metrics["test_rmse_persistence"])]
    if "test_rmse_seasonal_naive" in metrics:
        parts.append(versus("seasonal naive", metrics["test_rmse_seasonal_naive"]))
    return [
        f"baselines   RMSE model {model:.4g} vs {', '.join(parts)}; MASE {metrics['test_mase']:.2f}"
    ]
