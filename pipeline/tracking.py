"""Everything MLflow: where the store is, the run's lifetime and status, params and artifacts."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STORE_DIR = PROJECT_ROOT / "mlruns"


def default_tracking_uri() -> str:
    """SQLite inside the project's mlruns/, absolute so the working directory does not matter."""
    return f"sqlite:///{STORE_DIR / 'mlflow.db'}"


def resolve_tracking_uri(configured: str | None) -> str:
    """`tracking.uri` wins over $MLFLOW_TRACKING_URI, which wins over the project default."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store (pipeline/ui.py)."""
    if uri.startswith(("http://", "https://")):
        return uri  # already a server
    if uri == default_tracking_uri():
        return "python -m pipeline.ui"
    return f"python -m pipeline.ui --uri {uri}"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'model': {'units': 8}} -> {'model.units': 8}; lists stay whole, as one param."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _artifact_location(uri: str, experiment_name: str) -> str | None:
    """For the project's own SQLite store, keep artifacts beside it in mlruns/artifacts."""
    from pipeline.store import sqlite_path

    db = sqlite_path(uri)
    if db is None:
        return None
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment_name).strip("_") or "experiment"
    return (db.parent / "artifacts" / slug).as_uri()


def ensure_experiment(client, name: str, uri: str) -> str:
    """Get or create the experiment; creation races with other processes are caught, not fatal."""
    from mlflow.exceptions import MlflowException

    for _ in range(2):
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise PipelineError(
                    f"The MLflow experiment `{name}` was deleted. Restore it with "
                    f"`mlflow experiments restore --experiment-id {exp.experiment_id}` or pick "
                    "another with `tracking.experiment_name=NAME`."
                )
            return exp.experiment_id
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(uri, name))
        except MlflowException:
            continue  # another process created it between our get and create
    raise PipelineError(f"Could not create or find the MLflow experiment `{name}` at {uri}.")


class RunStopped(Exception):
    """Raised to stop a run on purpose (a sweep's pruner): the run closes KILLED with `tags`."""

    def __init__(self, message: str, tags: dict[str, str] | None = None):
        super().__init__(message)
        self.tags = tags or {}


class _Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt so the run is closed as KILLED."""

    exit_code = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


def _raise_terminated(signum, frame):
    raise _Terminated(f"received signal {signum}")


@contextlib.contextmanager
def mlflow_run(
    uri: str,
    experiment_name: str,
    run_name: str | None,
    tags: dict[str, str],
    system_metrics: bool = True,
    system_metrics_interval: float = 10.0,
    run_id: str | None = None,
):
    """Open one MLflow run; close it FINISHED, FAILED (with the error in tags) or KILLED
    (interrupted, or stopped on purpose by RunStopped).

    With `system_metrics`, MLflow samples CPU, memory, disk, network (and GPU, through NVML)
    every `system_metrics_interval` seconds in a background thread while the run is open.
    With `run_id`, the existing run is reopened (resuming an interrupted training).
    An exception leaving the block carries the run id as `exc.run_id`.
    """
    import mlflow

    from pipeline.store import retry_locked, store_lock

    if uri == default_tracking_uri():
        STORE_DIR.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    previous = signal.getsignal(signal.SIGTERM)
    in_main_thread = _is_main_thread()
    if in_main_thread:
        signal.signal(signal.SIGTERM, _raise_terminated)
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(system_metrics_interval)
    # One process at a time creates the store's tables, the experiment and the run.
    with store_lock(uri):
        client = mlflow.MlflowClient()  # opening a new SQLite store creates its tables
        if run_id:
            experiment_id = client.get_run(run_id).info.experiment_id
        else:
            experiment_id = ensure_experiment(client, experiment_name, uri)
        run = retry_locked(
            mlflow.start_run,
            run_id=run_id,
            experiment_id=experiment_id,
            run_name=None if run_id else run_name,
            tags=tags,
            log_system_metrics=system_metrics,
        )
    try:
        yield run
    except KeyboardInterrupt as exc:
        exc.run_id = run.info.run_id
        retry_locked(mlflow.set_tag, "status_reason", "interrupted (Ctrl-C or SIGTERM)")
        retry_locked(mlflow.end_run, status="KILLED")
        raise
    except RunStopped as exc:
        retry_locked(mlflow.set_tags, {**exc.tags, "status_reason": str(exc)})
        retry_locked(mlflow.end_run, status="KILLED")
        raise
    except BaseException as exc:
        exc.run_id = run.info.run_id
        failure = {"error.type": type(exc).__name__, "error.message": str(exc)[:4000]}
        failure.update(getattr(exc, "mlflow_tags", {}))  # e.g. failure_reason=nan_loss
        retry_locked(mlflow.set_tags, failure)
        retry_locked(mlflow.end_run, status="FAILED")
        raise
    else:
        retry_locked(mlflow.end_run, status="FINISHED")
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def epoch_logger():
    """A Keras callback that logs each epoch's metrics and learning rate in one MLflow call.

    The writes happen on a worker thread of its own, so a slow or locked store never stalls
    training; `close()` (called when training ends) waits until every epoch is written. MLflow's
    own `synchronous=False` queue would do the same but costs about a second at the end of every
    run (its worker only notices the stop between one-second polls).
    """
    import queue
    import sys
    import threading
    import time

    import keras
    import mlflow
    from mlflow.entities import Metric

    from pipeline.store import retry_locked

    class EpochLogger(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self._queue: queue.Queue = queue.Queue()
            self._thread: threading.Thread | None = None

        def on_train_begin(self, logs=None):
            run_id, client = mlflow.active_run().info.run_id, mlflow.MlflowClient()

            def write():
                while (metrics := self._queue.get()) is not None:
                    try:
                        retry_locked(client.log_batch, run_id, metrics=metrics)
                    except Exception as exc:  # noqa: BLE001 - lose a point, not the run
                        print(f"Warning: could not log epoch metrics: {exc}", file=sys.stderr)

            self._thread = threading.Thread(target=write, name="epoch-logger", daemon=True)
            self._thread.start()

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            lr = getattr(self.model.optimizer, "learning_rate", None)
            if lr is not None:
                metrics["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
            stamp = int(time.time() * 1000)
            self._queue.put([Metric(k, v, stamp, epoch) for k, v in metrics.items()])

        def on_train_end(self, logs=None):
            self.close()

        def close(self):
            """Wait until every queued epoch is written (also after a failed fit)."""
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
                self._thread = None

    return EpochLogger()


def resumable_state(uri: str, run_id: str, current: dict[str, Any]) -> dict[str, Any]:
    """The last backup of run `run_id`, if that run may be continued with this config."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline import resilience
    from pipeline.errors import ConfigError
    from pipeline.store import sqlite_path

    db = sqlite_path(uri)
    try:
        if db is not None and not db.exists():  # no store yet: do not create one to look
            raise MlflowException(f"no store at {db}")
        run = mlflow.MlflowClient(uri).get_run(run_id)
    except MlflowException:
        raise ConfigError(
            f"`resume={run_id}` names no run in the MLflow store {uri}. Copy the id from the "
            "interrupted run's console message or from the MLflow UI."
        ) from None
    if run.info.status == "FINISHED":
        raise ConfigError(
            f"Run {run_id} already FINISHED; there is nothing to resume. Start a new run instead "
            "(drop `resume=`)."
        )
    diffs = resilience.config_differences(run.data.params, current)
    if diffs:
        raise ConfigError(
            f"Cannot resume run {run_id}: the config differs from the run's in "
            f"{'; '.join(diffs)}. Repeat the run's own overrides (only `trainer.epochs` may change)."
        )
    folder = run.data.tags.get("backup_dir")
    state = resilience.read_backup(Path(folder)) if folder else None
    if state is None:
        raise ConfigError(
            f"Run {run_id} has no training backup to resume from (it stopped before its first "
            f"epoch ended, or its backup folder {folder} is gone). Start a new run instead."
        )
    return {**state, "backup_dir": folder}


def prepare_run_end(log_model: bool):
    """Load, on a background thread, what the end of a run needs: plotting and model logging.

    Started when fit starts. TensorFlow releases the GIL while it computes, so these imports
    (and MLflow's scan of the installed packages, which it repeats on every model it logs)
    cost the run almost nothing instead of about 2 s of wall time at its end.
    """
    import threading

    def load():
        try:
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.figure  # noqa: F401

            if log_model:
                import mlflow.tensorflow  # noqa: F401
                from mlflow.utils import requirements_utils

                # Private, hence guarded: MLflow builds this map lazily and keeps it.
                requirements_utils._init_modules_to_packages_map()
        except Exception:  # noqa: BLE001 - a pure speed-up; the main thread does it if this fails
            pass

    thread = threading.Thread(target=load, name="prepare-run-end", daemon=True)
    thread.start()
    return thread
