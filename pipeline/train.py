"""Training stage: `train(cfg) -> metrics`, and `python -m pipeline.train`, its Hydra wrapper."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline import resilience
from pipeline.config import Config, register_configs, validate
from pipeline.data import make_datasets
from pipeline.errors import PipelineError
from pipeline.fitting import (
    build_callbacks,
    compile_model,
    monitored_metric,
    optimizer_settings,
)

register_configs()


def seed_everything(conf: Config) -> None:
    """Seed, op determinism and dtype policy, each set for every run: TensorFlow and Keras keep
    them per process, so without this one run's settings would carry into the next run in the
    same process (a sweep, a notebook, the tests). Op determinism left on, for one, makes Keras
    quietly drop XLA."""
    import keras
    from tensorflow.python.framework import config as tf_config  # where the disable call lives

    keras.utils.set_random_seed(conf.seed)  # Python, NumPy and TensorFlow
    if conf.trainer.deterministic:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    keras.mixed_precision.set_global_policy(conf.trainer.mixed_precision or "float32")


def _limit(ds, n: int | None):
    return ds.take(n) if n else ds


def start_tracker(uri: str, separate: bool):
    """The run's MLflow side: in a tracking process of its own (started now, so that MLflow's
    imports overlap TensorFlow's), or in this process when MLflow is here already."""
    if separate:
        from pipeline.sidecar import RemoteTracker

        return RemoteTracker(uri)
    from pipeline.tracker import Tracker

    return Tracker(uri)


def train(
    cfg: DictConfig, output_dir: str | Path | None = None, separate_tracking: bool = False
) -> dict[str, float]:
    """Train and evaluate one model inside one MLflow run; return the final metrics.

    Config, data and store errors are raised before the run opens, so they leave no run
    behind. With `resume=<run_id>`, the interrupted run is reopened and training continues
    from its last per-epoch backup. MLflow runs in a separate tracking process when
    `tracking.separate_process` says so, or, when that is null, when `separate_tracking` does
    (the command line's single runs).
    """
    conf = validate(cfg)
    started = time.perf_counter()
    from pipeline import store, tracking

    uri = tracking.resolve_tracking_uri(conf.tracking.uri)
    store.check_store(uri)
    separate = conf.tracking.separate_process
    tracker = start_tracker(uri, separate_tracking if separate is None else separate)
    try:
        return _train(conf, cfg, tracker, uri, output_dir, started)
    finally:
        tracker.shutdown()


def _train(conf: Config, cfg: DictConfig, tracker, uri: str, output_dir, started: float) -> dict:
    from pipeline import tracking

    resolved = OmegaConf.to_container(cfg, resolve=True)
    flat = tracking.flatten(resolved)
    prior = tracker.resumable_state(conf.resume, flat) if conf.resume else None

    from pipeline import environment, model_logging, plots
    from pipeline.models import build_model

    seed_everything(conf)
    data = make_datasets(conf.data, conf.seed)
    model = build_model(conf.model, data.spec)
    compile_model(model, conf.trainer, data.spec, *optimizer_settings(conf))
    monitor, mode = monitored_metric(conf.trainer, data.spec)
    out = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="rnn-pipeline-"))
    out.mkdir(parents=True, exist_ok=True)
    backup_dir = Path(prior["backup_dir"]) if prior else out / "backup"

    run_name = conf.tracking.run_name or f"{conf.model.cell}-{conf.data.name}"
    tags = {"data": conf.data.name, "cell": conf.model.cell, "task": data.spec.task}
    tags["deterministic"] = str(conf.trainer.deterministic).lower()
    tags["backup_dir"] = str(backup_dir.resolve())
    in_sweep = conf.sweep.trial_number is not None
    if in_sweep:  # Optuna costs a single run 0.2 s to import
        from pipeline.sweeps import job as sweep_job

        tags.update(sweep_job.run_tags(conf.sweep))  # nests the trial's run under its parent
    tags.update(environment.run_tags(model))
    val_ds = _limit(data.val, conf.trainer.limit_eval_batches)
    test_ds = _limit(data.test, conf.trainer.limit_eval_batches)
    with tracking.open_run(
        tracker,
        conf.tracking.experiment_name,
        run_name,
        tags,
        system_metrics=conf.tracking.system_metrics,
        system_metrics_interval=conf.tracking.system_metrics_interval,
        run_id=conf.resume,
    ):
        run_id = tracker.info.run_id
        if prior is None:
            tracker.log_params(flat)
            tracker.log_text(OmegaConf.to_yaml(resolved), "config.yaml")
        else:
            tracker.set_tags({"resumed_at_epoch": str(prior["epoch"] + 1)})
        logger = tracking.epoch_logger(tracker)
        extra = [logger]
        if in_sweep:
            extra += sweep_job.trial_callbacks(conf, data.spec.task, run_id)  # pruning
        if conf.tracking.log_model:
            extra.append(model_logging.best_checkpoint(out / "best.keras", monitor, mode))
        callbacks, early_stopping = build_callbacks(conf.trainer, monitor, mode, backup_dir, extra)
        initial_epoch = resilience.restore(model, early_stopping, prior) if prior else 0
        verbose = conf.trainer.verbose
        if verbose is None:
            verbose = 1 if sys.stdout.isatty() else 2
        fit_started = time.perf_counter()
        # Lineage and the end's imports, on a background thread while the model trains.
        preparing = tracking.RunEndPreparation(
            tracker, data, conf.data.name, log_inputs=prior is None
        )
        try:
            history = model.fit(
                _limit(data.train, conf.trainer.limit_train_batches),
                validation_data=val_ds,
                epochs=conf.trainer.epochs,
                initial_epoch=initial_epoch,
                callbacks=callbacks,
                shuffle=False,  # the training pipeline reshuffles every epoch itself
                verbose=verbose,
            )
        finally:
            logger.close()  # every epoch's metrics are in the store, even when fit failed
            preparing.join()
        preparing.check()
        fit_seconds = time.perf_counter() - fit_started
        # Early stopping has restored the best epoch's weights: score those, on val and test.
        # Without it the weights are the last epoch's, whose val scores fit already computed.
        metrics = {k: float(v[-1]) for k, v in history.history.items() if k.startswith("val_")}
        if early_stopping is not None or not metrics:
            scores = model.evaluate(val_ds, return_dict=True, verbose=0)
            metrics = {f"val_{k}": float(v) for k, v in scores.items()}
        scores = model.evaluate(test_ds, return_dict=True, verbose=0)
        metrics.update({f"test_{k}": float(v) for k, v in scores.items()})
        epochs_run = initial_epoch + len(history.history.get("loss", []))
        best = early_stopping.best_epoch if early_stopping is not None else epochs_run - 1
        metrics.update(
            epochs_trained=epochs_run,
            best_epoch=best,
            num_params=model.count_params(),
            fit_seconds=fit_seconds,
        )
        tracker.post(
            "log_metrics",
            {f"final_{k}" if k.startswith("val_") else k: v for k, v in metrics.items()},
        )
        plots.log_pictures(model, history.history, test_ds, data, tracker)
        if conf.tracking.log_model:
            model_logging.log_trained_model(
                tracker, model, out, test_ds, conf.tracking.registered_model_name
            )
    shutil.rmtree(backup_dir, ignore_errors=True)  # finished: nothing left to resume
    metrics["wall_seconds"] = time.perf_counter() - started
    print_summary(conf, data, model, metrics, run_id, uri)
    return metrics


def print_summary(conf: Config, data, model, metrics: dict, run_id: str, uri: str) -> None:
    from pipeline.tracking import ui_command

    sizes = data.sizes
    tests = "  ".join(
        f"{k.removeprefix('test_')}={v:.4f}" for k, v in metrics.items() if k.startswith("test_")
    )
    lines = [
        "",
        "== run summary ==",
        f"model       {model.name}: {conf.model.cell} x{conf.model.num_layers}, "
        f"{conf.model.units} units, {metrics['num_params']:,} parameters",
        f"data        {conf.data.name}: {sizes['train']} train / {sizes['val']} val / {sizes['test']} test",
        f"epochs      {metrics['epochs_trained']} (best epoch {metrics['best_epoch'] + 1})",
        f"test        {tests}",
        f"wall time   {metrics['wall_seconds']:.1f} s (fit {metrics['fit_seconds']:.1f} s)",
        f"MLflow run  {run_id} (experiment {conf.tracking.experiment_name})",
        f"browse      {ui_command(uri)}",
    ]
    print("\n".join(lines), flush=True)


def remove_empty_run_dir(out: Path) -> None:
    """Nothing ran: delete the run folder Hydra made, if it holds only Hydra's own files."""
    if not out.is_dir() or out.resolve() == Path.cwd().resolve():
        return
    if {p.name for p in out.iterdir()} - {".hydra"}:
        return
    shutil.rmtree(out / ".hydra", ignore_errors=True)
    for folder in (out, out.parent, out.parent.parent):  # outputs/DATE/TIME, when empty
        try:
            folder.rmdir()
        except OSError:
            break


def interrupted_message(exc: BaseException, overrides) -> str:
    """What to tell the user after Ctrl-C/SIGTERM: the run is KILLED, and how to resume it."""
    run_id = getattr(exc, "run_id", None)
    if run_id is None:
        return "Stopped: interrupted before training started; nothing was logged."
    kept = [o for o in overrides if not o.startswith("resume=")]
    command = " ".join(["python -m pipeline.train", *kept, f"resume={run_id}"])
    return (
        f"Stopped: training was interrupted; MLflow run {run_id} is marked KILLED and its last "
        f"epoch backup is kept. Resume it with:\n  {command}"
    )


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Train once and return the metric a sweep optimizes."""
    from hydra.core.hydra_config import HydraConfig

    output_dir = HydraConfig.get().runtime.output_dir
    try:
        # A single run from the command line tracks in a process of its own; a sweep's jobs,
        # which share their process with the sweeper's MLflow, track in it.
        metrics = train(cfg, output_dir=output_dir, separate_tracking=not _is_multirun())
    except PipelineError as exc:
        if _is_multirun():
            raise  # the sweeper records the failure and goes on
        remove_empty_run_dir(Path(output_dir))
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see tracking.open_run)
        print(interrupted_message(exc, HydraConfig.get().overrides.task), file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 130))
    name = cfg.optimized_metric or ("val_accuracy" if "val_accuracy" in metrics else "val_loss")
    return metrics.get(name)


if __name__ == "__main__":
    from pipeline.cli import exit_now, preflight

    preflight(sys.argv[1:])
    main()
    exit_now(0)  # errors never get here: they exit through sys.exit with their own code
