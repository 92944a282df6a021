"""MLflow around a run: where the store is, the run's lifetime and final status (`open_run`),
the epoch logger, resuming, and the work done while training. The writes are `tracker.py`'s."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
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


def outcome(exc: BaseException | None) -> tuple[str, dict[str, str]]:
    """The status a run closes with, and the tags that say why, for the exception that ended it."""
    if exc is None:
        return "FINISHED", {}
    if isinstance(exc, KeyboardInterrupt):
        return "KILLED", {"status_reason": "interrupted (Ctrl-C or SIGTERM)"}
    if isinstance(exc, RunStopped):
        return "KILLED", {**exc.tags, "status_reason": str(exc)}
    failure = {"error.type": type(exc).__name__, "error.message": str(exc)[:4000]}
    failure.update(getattr(exc, "mlflow_tags", {}))  # e.g. failure_reason=nan_loss
    return "FAILED", failure


@contextlib.contextmanager
def open_run(tracker, experiment_name: str, run_name: str | None, tags: dict[str, str], **kwargs):
    """Open the tracker's run; close it FINISHED, FAILED (with the error in tags) or KILLED
    (interrupted, or stopped on purpose by RunStopped). SIGTERM counts as an interrupt.
    An exception leaving the block carries the run id as `exc.run_id`."""
    previous = signal.getsignal(signal.SIGTERM)
    in_main_thread = _is_main_thread()
    if in_main_thread:
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        info = tracker.open(experiment_name, run_name, tags, **kwargs)
        try:
            yield tracker
        except BaseException as exc:
            exc.run_id = info.run_id
            status, why = outcome(exc)
            try:
                tracker.close(status, why)
            except Exception as close_error:  # noqa: BLE001 - keep the original error
                print(f"Warning: could not close MLflow run: {close_error}", file=sys.stderr)
            raise
        tracker.close("FINISHED")
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def mlflow_run(uri: str, *args, **kwargs):
    """`open_run` with a tracker in this process (arguments as `Tracker.open`'s); yields the
    tracker, whose `.info.run_id` names the run."""
    from pipeline.tracker import Tracker

    return open_run(Tracker(uri), *args, **kwargs)


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def epoch_logger(tracker):
    """A Keras callback that logs each epoch's metrics and learning rate in one tracker call.

    The writes happen on a worker thread of its own, so a slow or locked store never stalls
    training; `close()` (called when training ends) waits until every epoch is written. MLflow's
    own `synchronous=False` queue would do the same but costs about a second at the end of every
    run (its worker only notices the stop between one-second polls).
    """
    import queue
    import threading
    import time

    import keras

    class EpochLogger(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self._queue: queue.Queue = queue.Queue()
            self._thread: threading.Thread | None = None

        def on_train_begin(self, logs=None):
            def write():
                while (item := self._queue.get()) is not None:
                    try:
                        tracker.log_metrics(*item)
                    except Exception as exc:  # noqa: BLE001 - lose a point, not the run
                        print(f"Warning: could not log epoch metrics: {exc}", file=sys.stderr)

            self._thread = threading.Thread(target=write, name="epoch-logger", daemon=True)
            self._thread.start()

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            lr = getattr(self.model.optimizer, "learning_rate", None)
            if lr is not None:
                metrics["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
            self._queue.put((metrics, epoch, int(time.time() * 1000)))

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


class RunEndPreparation:
    """Work for the end of a run, done on a background thread while the model trains.

    TensorFlow releases the GIL while it computes, so the dataset lineage (hashing every split)
    and, for a tracker in this process, the imports the end of a run needs (matplotlib, MLflow's
    model format) cost the run almost nothing, instead of seconds at the end. `join()` waits;
    `check()` re-raises a lineage error.
    """

    def __init__(self, tracker, data, data_name: str, log_inputs: bool = True):
        import threading

        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(tracker, data, data_name, log_inputs),
            name="prepare-run-end",
            daemon=True,
        )
        self._thread.start()

    def _run(self, tracker, data, data_name, log_inputs):
        if log_inputs:
            try:
                from pipeline import lineage

                tracker.log_datasets(lineage.describe_splits(data, data_name))
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread by join()
                self._error = exc
        try:
            tracker.import_ahead()
        except Exception:  # noqa: BLE001 - a pure speed-up; the calls import what they need
            pass

    def join(self) -> None:
        """Wait for the thread (also when training failed: nothing may write after the close)."""
        self._thread.join()

    def check(self) -> None:
        """Re-raise the lineage error, if logging the datasets failed."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
