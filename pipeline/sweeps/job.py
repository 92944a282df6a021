"""The job's side of a sweep: find its Optuna trial in the storage, report every epoch, get pruned.

The sweeper passes `sweep.storage`, `sweep.study_name` and `sweep.trial_number` as overrides, so
this works the same whether the job runs in the sweeping process or in another process or
machine that reaches the same storage.
"""

from __future__ import annotations

import math
import os

import optuna

from pipeline.config import Config
from pipeline.config.schema import SweepConfig
from pipeline.tracking.runs import RunStopped
from pipeline.training import objective

PRUNED_ATTR = "pruned_at_epoch"  # user attr the job sets before stopping, read by the sweeper
RUN_ID_ATTR = "mlflow_run_id"  # user attr: the trial's MLflow run, so the sweeper can tag it
PRUNER_ATTR = "pruner"  # study user attr: the pruner's config, which storages do not keep
RESULT_ATTR = "job_result"  # user attr: the metric the job returns, read by asynchronous workers


class TrialPruned(RunStopped, optuna.TrialPruned):
    """The pruner stopped this trial: Optuna records it PRUNED, MLflow closes the run KILLED."""


def run_tags(sweep: SweepConfig) -> dict[str, str]:
    """Tags nesting the trial's MLflow run under the sweep's parent run."""
    tags = {"trial_number": str(sweep.trial_number), "study_name": str(sweep.study_name)}
    tags["trial_state"] = "RUNNING"  # the sweeper sets the final state
    if sweep.parent_run_id:
        tags["mlflow.parentRunId"] = sweep.parent_run_id
    if sweep.worker is not None:  # an asynchronous worker's process (pipeline.sweeps.workers)
        tags["trial_worker"] = str(sweep.worker)
        tags["trial_devices"] = devices_of(os.environ)
    return tags


def devices_of(env) -> str:
    """What the worker gave this process: its GPUs (CUDA_VISIBLE_DEVICES) or its CPU threads."""
    gpus = env.get("CUDA_VISIBLE_DEVICES")
    if gpus:
        return f"GPU {gpus}"
    threads = env.get("TF_NUM_INTRAOP_THREADS")
    if not threads:
        return "CPU"
    return f"CPU, {threads} thread{'' if threads == '1' else 's'}"


def load_trial(sweep: SweepConfig) -> optuna.Trial:
    """Rebuild the running trial from its storage, study name and number."""
    from pipeline.sweeps.storage import open_storage

    storage = open_storage(sweep.storage)
    study = optuna.load_study(study_name=sweep.study_name, storage=storage)
    study.pruner = pruner_of(study)
    study_id = storage.get_study_id_from_name(sweep.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, sweep.trial_number)
    return optuna.Trial(study, trial_id)


def pruner_of(study: optuna.Study) -> optuna.pruners.BasePruner:
    """The pruner the sweeper chose, rebuilt from the study's attrs (only optuna.pruners classes)."""
    from hydra.utils import instantiate

    config = study.user_attrs.get(PRUNER_ATTR) or {"_target_": "optuna.pruners.NopPruner"}
    if not str(config.get("_target_", "")).startswith("optuna.pruners."):
        raise ValueError(f"Study {study.study_name} names an unexpected pruner: {config}")
    return instantiate(config)


def objective_metric(conf: Config, task: str) -> tuple[str, str]:
    """The metric the sweep optimizes and its direction ("max"/"min"): `optimized_metric`, else
    the task's validation metric."""
    return objective.monitored(conf.optimized_metric, task)


def trial_callbacks(conf: Config, task: str, run_id: str) -> list:
    """Keras callbacks that report to, and may be stopped by, the job's trial."""
    import keras

    trial = load_trial(conf.sweep)
    trial.set_user_attr(RUN_ID_ATTR, run_id)
    metric, _ = objective_metric(conf, task)

    class OptunaPruning(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(metric)
            if value is None or not math.isfinite(float(value)):
                return  # nothing to compare; a NaN final value fails the trial instead
            trial.report(float(value), step=epoch)
            if trial.should_prune():
                trial.set_user_attr(PRUNED_ATTR, epoch)
                raise TrialPruned(
                    f"Trial {trial.number} pruned after epoch {epoch + 1} ({metric}={value:.4f}).",
                    tags={"pruned": "true", "trial_state": "PRUNED", "pruned_at_epoch": str(epoch)},
                )

    return [OptunaPruning()]


class TrialLink:
    """What a sweep adds to the run of one of its trials (`train(cfg, trial=...)`): tags nesting
    the run under the sweep's parent run, and the callbacks reporting to its Optuna trial."""

    def __init__(self, conf: Config):
        self.conf = conf
        self.tags = run_tags(conf.sweep)

    def callbacks(self, run_id: str) -> list:
        return trial_callbacks(self.conf, self.conf.data.task, run_id)

    def record_result(self, value: float | None) -> None:
        """Leave the job's return value on its trial, for a sweeper that started it as a process."""
        if value is not None:
            load_trial(self.conf.sweep).set_user_attr(RESULT_ATTR, float(value))
