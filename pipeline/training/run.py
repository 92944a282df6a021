"""Training stage: `train(cfg) -> metrics`, one model trained and evaluated inside one MLflow run."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from omegaconf import DictConfig, OmegaConf

from pipeline.config import Config, validate
from pipeline.data import make_datasets
from pipeline.models import build_model
from pipeline.tracking import environment, lineage, pictures
from pipeline.tracking.runs import (
    epoch_logger,
    flatten,
    held_interrupts,
    mark_dead_runs,
    open_run,
)
from pipeline.tracking.store import check_store, resolve_tracking_uri, retry_locked
from pipeline.training import (
    classification,
    devices,
    distribution,
    forecasting,
    objective,
    resume,
    served,
)
from pipeline.training.callbacks import best_checkpoint, build_callbacks, interrupt_check
from pipeline.training.compile import compile_model, optimizer_settings


class TrialHooks(Protocol):
    """What a sweep adds to a run it launches (pipeline.sweeps.job.TrialLink): tags nesting the
    run under the sweep's parent, and callbacks reporting to (and pruned by) its trial."""

    tags: dict[str, str]

    def callbacks(self, run_id: str) -> list: ...


@dataclass
class TrainResult:
    """What one run produced: its final metrics and where to find it."""

    metrics: dict[str, float]
    run_id: str
    uri: str
    conf: Config  # the validated config the run trained with
    sizes: dict[str, int] = field(default_factory=dict)
    model_name: str = ""


def train(cfg: DictConfig, output_dir: str | Path | None = None, trial: TrialHooks | None = None):
    """Train and evaluate one model inside one MLflow run; return the final metrics (a dict)."""
    return run_training(cfg, output_dir, trial).metrics


def _limit(ds, n: int | None):
    return ds.take(n) if n else ds


def run_training(
    cfg: DictConfig, output_dir: str | Path | None = None, trial: TrialHooks | None = None
) -> TrainResult:
    """`train`, returning the run's id and store with the metrics.

    Config, data and store errors are raised before the run opens, so they leave no run
    behind. With `resume=<run_id>`, the interrupted run is reopened and training continues
    from its last per-epoch backup.
    """
    conf = validate(cfg)
    started = time.perf_counter()
    uri = resolve_tracking_uri(conf.tracking.uri)
    check_store(uri)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    flat = flatten(resolved)
    prior = resume.resumable_state(uri, conf.resume, flat) if conf.resume else None

    print(devices.device_line(devices.start_tensorflow()), flush=True)
    strategy = distribution.make_strategy(conf.trainer)
    if strategy is not None:
        print(distribution.distribution_line(strategy), flush=True)
    devices.seed_everything(conf)
    data = make_datasets(conf.data, conf.seed)
    validation = data.val is not None
    watched = {"trainer.monitor": conf.trainer.monitor, "optimized_metric": conf.optimized_metric}
    objective.check_monitorable(watched, validation)  # a sweep is refused by the sweeper itself
    # Generating a dataset (a cold cache) draws from the global NumPy and Python generators, and
    # loading a cached one does not: seeding again here makes the initial weights the same either way.
    devices.reseed(conf.seed)
    with distribution.strategy_scope(strategy):  # the model's variables on every replica
        model = build_model(conf.model, data.spec)
        compile_model(model, conf.trainer, data.spec, *optimizer_settings(conf))
    monitor, mode = objective.monitored(conf.trainer.monitor, data.spec.task, validation)
    out = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="rnn-pipeline-"))
    out.mkdir(parents=True, exist_ok=True)
    backup_dir = Path(prior["backup_dir"]) if prior else out / "backup"

    tags = {"data": conf.data.name, "cell": conf.model.cell, "task": data.spec.task}
    tags["deterministic"] = str(conf.trainer.deterministic).lower()
    tags["backup_dir"] = str(backup_dir.resolve())
    tags.update(data.tags)
    tags.update(trial.tags if trial else {})
    setup = {**devices.setup_tags(model), **distribution.distribution_tags(strategy)}
    tags.update(environment.run_tags(extra=setup))
    mark_dead_runs(uri)  # runs a killed process left RUNNING on this store
    run_name = conf.tracking.run_name or f"{conf.model.cell}-{conf.data.name}"
    with open_run(
        uri,
        conf.tracking.experiment_name,
        run_name,
        tags,
        system_metrics=conf.tracking.system_metrics,
        system_metrics_interval=conf.tracking.system_metrics_interval,
        run_id=conf.resume,
    ) as run:
        run_id = run.info.run_id
        metrics = _fit_and_log(
            conf, resolved, flat, prior, data, model, monitor, mode, out, backup_dir, trial, run_id
        )
    shutil.rmtree(backup_dir, ignore_errors=True)  # finished: nothing left to resume
    metrics["wall_seconds"] = time.perf_counter() - started
    return TrainResult(metrics, run_id, uri, conf, data.sizes, model.name)


def _fit_and_log(
    conf: Config,
    resolved,
    flat,
    prior,
    data,
    model,
    monitor,
    mode,
    out: Path,
    backup_dir: Path,
    trial,
    run_id: str,
) -> dict[str, Any]:
    """Inside the open run: log the config and data, fit, evaluate, log results and model."""
    import mlflow

    if prior is None:
        retry_locked(mlflow.log_params, flat)
        mlflow.log_text(OmegaConf.to_yaml(resolved), "config.yaml")
        lineage.log_datasets(data, conf.data.name)
    else:
        mlflow.set_tag("resumed_at_epoch", str(prior["epoch"] + 1))
    logger = epoch_logger()
    extra = [logger]
    if trial:
        extra += trial.callbacks(run_id)  # pruning
    if conf.tracking.log_model:
        extra.append(best_checkpoint(out / "best.keras", monitor, mode))
    callbacks, early_stopping = build_callbacks(conf.trainer, monitor, mode, backup_dir, extra)
    initial_epoch = resume.restore(model, early_stopping, prior) if prior else 0
    verbose = conf.trainer.verbose
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    val_ds = _limit(data.val, conf.trainer.limit_eval_batches) if data.val is not None else None
    test_ds = _limit(data.test, conf.trainer.limit_eval_batches)
    stop = [interrupt_check()]
    # Ctrl-C and SIGTERM stop fit and evaluate between steps (see tracking.runs._on_signal).
    with held_interrupts():
        fit_started = time.perf_counter()
        history = model.fit(
            _limit(data.train, conf.trainer.limit_train_batches),
            validation_data=val_ds,
            epochs=conf.trainer.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            shuffle=False,  # the training pipeline reshuffles every epoch itself
            verbose=verbose,
        )
        fit_seconds = time.perf_counter() - fit_started
        # Early stopping has restored the best epoch's weights: score those, on val and test.
        # Without it the weights are the last epoch's, whose val scores fit already computed.
        metrics = {k: float(v[-1]) for k, v in history.history.items() if k.startswith("val_")}
        if val_ds is not None and (early_stopping is not None or not metrics):
            scores = model.evaluate(val_ds, return_dict=True, verbose=0, callbacks=stop)
            metrics = {f"val_{k}": float(v) for k, v in scores.items()}
        scores = model.evaluate(test_ds, return_dict=True, verbose=0, callbacks=stop)
        metrics.update({f"test_{k}": float(v) for k, v in scores.items()})
        if forecasting.is_forecast(data):  # original units, beside persistence and seasonal naive
            season = getattr(conf.data, "season", None)
            metrics = forecasting.apply(
                metrics, forecasting.forecast_metrics(model, data, test_ds, season)
            )
        if data.spec.task == "classification":
            evaluated = {"val": val_ds, "test": test_ds}
            evaluated = {split: ds for split, ds in evaluated.items() if ds is not None}
            metrics.update(classification.class_scores(model, data, evaluated))
    logger.deliver()  # epochs the tracking server missed while it was down, sent again
    epochs_run = initial_epoch + len(history.history.get("loss", []))
    best = early_stopping.best_epoch if early_stopping is not None else epochs_run - 1
    metrics.update(
        epochs_trained=epochs_run,
        best_epoch=best,
        num_params=model.count_params(),
        fit_seconds=fit_seconds,
    )
    mlflow.log_metrics({f"final_{k}" if k.startswith("val_") else k: v for k, v in metrics.items()})
    try:
        pictures.log_pictures(model, history.history, test_ds, data)
    except Exception as exc:  # noqa: BLE001 - a missing picture must not fail the run
        print(f"Warning: the run's pictures were not logged: {exc}", file=sys.stderr)
    if conf.tracking.log_model:
        served.log_served_model(model, data, out, conf.tracking.registered_model_name)
    return metrics
