"""The sweep loop: claim trials up to the study's total, launch their jobs, record the outcomes.

`n_trials` is the study's total of COMPLETE + PRUNED trials (plus those running now), so the same
command run again resumes, and run in several terminals cooperates. FAIL trials (a job raised,
returned NaN, or its worker died) do not count: they are replaced, up to `max_failures` in one
invocation.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from omegaconf import DictConfig, open_dict
from optuna.trial import TrialState

from pipeline.config import PipelineError, validate
from pipeline.sweeps import job, registry, storage, workers
from pipeline.sweeps.report import ParentRun
from pipeline.sweeps.space import SearchSpace, format_value
from pipeline.tracking.runs import mark_dead_runs
from pipeline.tracking.store import resolve_tracking_uri
from pipeline.training.objective import check_sweepable

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


class SweepError(PipelineError):
    """The sweep cannot go on (failure budget spent, bad sampler or storage)."""


@dataclass
class Settings:
    """The sweeper's own knobs, from `hydra.sweeper` (see conf/hparams_search/rnn.yaml)."""

    n_trials: int
    n_jobs: int = 1
    n_workers: int = 1
    preload: bool = False
    gpus_per_trial: int | None = None
    direction: str | None = None
    study_name: str | None = None
    storage: str | None = None
    max_failures: int = 5
    heartbeat_interval: float | None = 60
    grace_period: float = 300
    stale_retries: int = 1
    register_best: str | None = None


def objective(config: DictConfig) -> tuple[str, str]:
    """The metric the jobs return and its direction, from the composed config's data task."""
    task_cfg = copy.deepcopy(config)
    with open_dict(task_cfg):
        task_cfg.pop("hydra", None)
    conf = validate(task_cfg)
    check_sweepable(conf.data)
    metric, mode = job.objective_metric(conf, conf.data.task)
    return metric, "maximize" if mode == "max" else "minimize"


def default_study_name(config: DictConfig, space: SearchSpace, definition: dict) -> str:
    """Same search, same fixed overrides, same sampler and pruner -> same study (so it resumes)."""
    choices = config.hydra.runtime.choices if "hydra" in config else {}
    search = choices.get("hparams_search") or "sweep"
    digest = hashlib.sha1(json.dumps(definition, sort_keys=True, default=str).encode())
    return f"{search}-{config.data.name}-{digest.hexdigest()[:8]}"


class Sweep:
    """One invocation of the sweeper on one study."""

    def __init__(self, settings: Settings, space: SearchSpace, config: DictConfig, algorithms):
        self.s, self.space, self.config = settings, space, config
        self.metric, auto_direction = objective(config)
        registry.check_config(settings.register_best, config.tracking.log_model)
        self.direction = settings.direction or auto_direction
        self.algorithms = algorithms
        sampler_cfg, pruner_cfg = algorithms.sampler_config, algorithms.pruner_config
        self.definition = {
            "space": space.describe(),
            "fixed": space.fixed,
            "sampler": sampler_cfg,
            "pruner": pruner_cfg,
            "direction": self.direction,
            "metric": self.metric,
        }
        self.uri = resolve_tracking_uri(config.tracking.uri)
        self.storage_url = settings.storage or storage.default_storage(self.uri)
        if storage.is_journal_file(self.storage_url):  # jobs may run from another directory
            self.storage_url = str(Path(self.storage_url).resolve())
        self.study_name = settings.study_name or default_study_name(config, space, self.definition)
        self.storage = storage.open_storage(
            self.storage_url,
            settings.heartbeat_interval,
            settings.grace_period,
            settings.stale_retries,
        )
        self.study = optuna.create_study(
            storage=self.storage,
            study_name=self.study_name,
            sampler=algorithms.sampler(space),
            pruner=algorithms.pruner(),
            direction=self.direction,
            load_if_exists=True,
        )
        # Jobs in other processes rebuild the pruner from here: storages keep no pruner.
        self.study.set_user_attr(job.PRUNER_ATTR, pruner_cfg)
        self.failures = 0
        self.ran: list[int] = []

    def run(self, launch: Callable[[Sequence[Sequence[str]], int], list]) -> optuna.Study:
        """Run trials until the study holds n_trials; returns the study."""
        mark_dead_runs(self.uri)  # runs (trials, parents) a killed process left RUNNING
        parent = ParentRun(self.uri, self.config.tracking.experiment_name, self.study_name)
        if self.s.register_best:
            registry.prepare(parent.client, self.s.register_best)
        parent.open(
            self.study,
            self._parent_params(),
            storage.claim_lock(self.storage_url),
        )
        status = "FAILED"
        try:
            if self.s.n_workers > 1:
                self._run_workers(parent)
            else:
                while batch := self.claim(self.s.n_jobs):
                    self._run_batch(batch, launch, parent)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            parent.finish(self.study, self.space, self.metric, self.ran, status)
        if self.s.register_best:  # a sweep that ended normally; not one interrupted or failed
            # Under the claim lock, workers ending together register the best run once and each
            # compares against the champion the other left.
            with storage.claim_lock(self.storage_url):
                line = registry.register_best(
                    parent.client, self.uri, self.study, self.metric, self.s.register_best
                )
            print(line, flush=True)
        return self.study

    def _parent_params(self) -> dict:
        sampler, pruner = self.definition["sampler"], self.definition["pruner"]
        return {
            "study_name": self.study_name,
            "storage": self.storage_url,
            "n_trials": self.s.n_trials,
            "direction": self.direction,
            "metric": self.metric,
            "sampler": sampler.get("_target_", "?").rsplit(".", 1)[-1],
            "sampler_config": json.dumps(sampler),
            "pruner": pruner.get("_target_", "?").rsplit(".", 1)[-1],
            "pruner_config": json.dumps(pruner),
            "search_space": json.dumps(self.space.describe()),
            "fixed_overrides": " ".join(self.space.fixed),
            **{f"space.{k}": v for k, v in self.space.describe().items()},
        }

    def claim(self, limit: int) -> list[optuna.Trial]:
        """Ask for as many trials as are missing (at most `limit`), under the storage's lock.

        Retried trials of dead workers wait in the study (WAITING); `ask` takes those first.
        """
        with storage.claim_lock(self.storage_url):
            if self.s.heartbeat_interval:  # a dead worker's trial frees its place in n_trials
                stale = storage.fail_stale_trials(
                    self.study, self.storage, self.s.grace_period, self.s.stale_retries
                )
                if stale:
                    print(f"[sweep] failed trials left RUNNING by dead workers: {stale}")
            counted = len(self.study.get_trials(deepcopy=False, states=COUNTED))
            wanted = min(limit, self.s.n_trials - counted)
            return [self._ask() for _ in range(max(wanted, 0))]

    def _ask(self) -> optuna.Trial:
        existing = len(self.study.get_trials(deepcopy=False))
        self.study.sampler = self.algorithms.sampler(self.space, offset=existing)
        with warnings.catch_warnings():
            # Optuna's heartbeat expects Study.optimize; our beat thread records it for ask/tell.
            warnings.filterwarnings("ignore", "Heartbeat of storage is supposed", UserWarning)
            trial = self.study.ask(self.space.distributions)
        if self.s.heartbeat_interval:
            storage.stamp(self.storage, trial)
        return trial

    def trial_overrides(self, trial: optuna.Trial, parent_id: str) -> list[str]:
        sweep = {
            "sweep.storage": self.storage_url,
            "sweep.study_name": self.study_name,
            "sweep.trial_number": trial.number,
            "sweep.parent_run_id": parent_id,
        }
        extra = [f"{k}={format_value(v)}" for k, v in sweep.items()]
        if not any(o.startswith("tracking.run_name=") for o in self.space.fixed):
            extra.append(f"tracking.run_name=trial-{trial.number}")
        return self.space.overrides(trial.params) + extra

    def _run_batch(self, batch: list[optuna.Trial], launch, parent: ParentRun) -> None:
        overrides = [self.trial_overrides(t, parent.run_id) for t in batch]
        for trial in batch:
            print(f"[sweep] trial {trial.number}: {' '.join(self.space.overrides(trial.params))}")
        try:
            with storage.heartbeat(batch, self.s.heartbeat_interval, self.storage):
                returns = launch(overrides, batch[0].number)
        except BaseException:
            for trial in batch:  # so a resumed sweep runs them again
                self.study.tell(trial, state=TrialState.FAIL)
            raise
        finally:
            _release_keras_memory()
        for trial, ret in zip(batch, returns, strict=True):
            self.record(trial, *outcome(ret, self.study.trials[trial.number]), parent)

    def _run_workers(self, parent: ParentRun) -> None:
        hydra_cfg = self.config.hydra
        gpus = workers.visible_gpus()
        slots = workers.plan_slots(
            self.s.n_workers, self.s.gpus_per_trial, gpus, workers.cpu_cores()
        )
        print(
            f"[sweep] {self.s.n_workers} workers: "
            + "; ".join(f"{s.index}: {s.describe()}" for s in slots),
            flush=True,
        )
        out_dir = Path(str(hydra_cfg.sweep.dir)).resolve()
        workers.run_workers(self, parent, slots, job_command(hydra_cfg), out_dir)

    def record(self, trial: optuna.Trial, state, value, error, parent: ParentRun) -> None:
        """Tell Optuna a trial's outcome, tag its MLflow run, print it, count failures."""
        if state == TrialState.COMPLETE:
            self.study.tell(trial, value)
        else:
            if error:
                trial.set_user_attr("error", error[:2000])
            self.study.tell(trial, state=state)
        self.ran.append(trial.number)
        frozen = self.study.trials[trial.number]
        parent.tag_child(frozen.user_attrs.get(job.RUN_ID_ATTR), state.name)
        if state == TrialState.PRUNED:
            shown = f"after epoch {frozen.user_attrs.get(job.PRUNED_ATTR, frozen.last_step) + 1}"
        else:
            shown = f"{value:.4f}" if value is not None else (error or "")[:200]
        print(f"[sweep] trial {trial.number} {state.name}: {shown}", flush=True)
        if state == TrialState.FAIL:
            self.failures += 1
            if self.failures > self.s.max_failures:
                raise SweepError(
                    f"{self.failures} trials failed in this sweep, more than "
                    f"hydra.sweeper.max_failures={self.s.max_failures}. Last error: {error}"
                )


def outcome(ret, frozen: optuna.trial.FrozenTrial) -> tuple[TrialState, float | None, str | None]:
    """What a job's return means for its trial: (state, value, error message)."""
    from hydra.core.utils import JobStatus

    if ret.status == JobStatus.COMPLETED:
        value = ret.return_value
        if value is None or not math.isfinite(float(value)):
            return TrialState.FAIL, None, f"the job returned {value!r} for the optimized metric"
        return TrialState.COMPLETE, float(value), None
    error = ret._return_value  # the exception the job raised (Hydra keeps it here)
    if isinstance(error, optuna.TrialPruned) or job.PRUNED_ATTR in frozen.user_attrs:
        return TrialState.PRUNED, None, None
    return TrialState.FAIL, None, f"{type(error).__name__}: {error}"


# Hydra settings a trial's own process must not inherit: they belong to the sweep.
SWEEP_ONLY = (
    "hydra.sweeper",
    "hydra/sweeper",
    "hydra.launcher",
    "hydra/launcher",
    "hydra.sweep.",
    "hydra.run.",
    "hydra.mode",
)


def job_command(hydra_cfg) -> list[str]:
    """The arguments before a trial's overrides that make `python -m pipeline.train` compose the
    same config as this sweep's jobs: its config name, a `--config-dir` and Hydra overrides."""
    argv = []
    if hydra_cfg.job.config_name != "config":
        argv += ["--config-name", hydra_cfg.job.config_name]
    for source in hydra_cfg.runtime.config_sources:
        if source.provider == "command-line" and source.schema == "file":
            argv += ["--config-dir", source.path]
    kept = [o for o in hydra_cfg.overrides.hydra if not o.startswith(SWEEP_ONLY)]
    return argv + kept


def _release_keras_memory() -> None:
    """Jobs run in this process leave their models in Keras' global state; drop them."""
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
