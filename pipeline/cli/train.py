"""`python -m pipeline.train`: the Hydra main around `train(cfg)`, and what the console says
when a run cannot start or is interrupted."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline.cli.summary import run_summary
from pipeline.config import PipelineError, register_configs, validate
from pipeline.tracking.runs import RunStopped
from pipeline.training.objective import monitored
from pipeline.training.run import run_training

register_configs()


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


def _trial_hooks(cfg: DictConfig):
    """A sweep's trial link when this job is one of its trials (the sweeper sets sweep.*)."""
    if cfg.sweep.trial_number is None:
        return None
    from pipeline.sweeps.job import TrialLink

    return TrialLink(validate(cfg))


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Train once and return the metric a sweep optimizes."""
    from hydra.core.hydra_config import HydraConfig

    output_dir = HydraConfig.get().runtime.output_dir
    trial = _trial_hooks(cfg)
    try:
        result = run_training(cfg, output_dir=output_dir, trial=trial)
    except RunStopped as exc:  # a trial its sweep's pruner stopped: an outcome, not an error
        if _is_multirun():
            raise
        print(f"Stopped: {exc}", file=sys.stderr)
        return None
    except PipelineError as exc:
        if _is_multirun():
            raise  # the sweeper records the failure and goes on
        remove_empty_run_dir(Path(output_dir))
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see tracking.runs.open_run)
        print(interrupted_message(exc, HydraConfig.get().overrides.task), file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 130))
    print(run_summary(result.conf, result), flush=True)
    metric, _ = monitored(result.conf.optimized_metric, result.conf.data.task)
    value = result.metrics.get(metric)
    if trial is not None:
        trial.record_result(value)
    return value


def run() -> None:
    """The command line: explain config mistakes first, then hand over to Hydra."""
    from pipeline.cli.preflight import preflight

    preflight(sys.argv[1:])
    main()
