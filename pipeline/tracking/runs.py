"""A run's life in MLflow: opened with the tags that say which process holds it, closed with an
honest status (FINISHED, FAILED with the error, KILLED when interrupted), and, when the process
died without closing it (SIGKILL, out of memory, a machine that went down), marked FAILED by the
next run, sweep or UI that opens the same store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from typing import Any

from pipeline.tracking.store import (
    ensure_experiment,
    open_client,
    quiet_mlflow_logs,
    retry_locked,
    store_lock,
)

# Tags naming the process that holds a run open: what `mark_dead_runs` checks.
HOST_TAG, PID_TAG, START_TAG = "process.host", "process.pid", "process.start_time"
DEAD = (
    "the training process (pid {pid} on {host}) ended without closing the run: killed "
    "(SIGKILL), out of memory, or the machine went down"
)


class RunStopped(Exception):
    """Raised to stop a run on purpose (a sweep's pruner): the run closes KILLED with `tags`."""

    def __init__(self, message: str, tags: dict[str, str] | None = None):
        super().__init__(message)
        self.tags = tags or {}


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt so the run is closed as KILLED."""

    exit_code = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class _Signals:
    """Whether interrupts are held for a safe point (`held_interrupts`) and which one waits."""

    held = False
    pending: int | None = None


def _interrupt(signum: int) -> KeyboardInterrupt:
    if signum == signal.SIGTERM:
        return Terminated(f"received signal {signum}")
    return KeyboardInterrupt()


def _on_signal(signum, frame):
    """SIGTERM and Ctrl-C: raise at once, or, while held, at the next safe point.

    Python raises a signal's exception between any two bytecodes, also inside TensorFlow's
    Python code while it holds native state (an iterator mid-step, an executor's context);
    unwinding from there aborted the process about one time in ten with heap corruption
    ("malloc_consolidate(): invalid chunk size") before the run could be closed. Keras has no
    interrupt handling of its own, so fit holds the signal and a callback raises it between
    steps (`raise_held_interrupt`). A second signal raises at once: the user insists.
    """
    if _Signals.held and _Signals.pending is None:
        _Signals.pending = signum
        os.write(2, b"\nStopping after the current step (signal again to stop at once).\n")
        return
    _Signals.pending = None
    raise _interrupt(signum)


@contextlib.contextmanager
def held_interrupts():
    """While the block runs, SIGTERM and Ctrl-C wait for `raise_held_interrupt()`."""
    _Signals.held, _Signals.pending = True, None
    try:
        yield
        raise_held_interrupt()  # one that came after the last safe point
    finally:
        _Signals.held, _Signals.pending = False, None


@contextlib.contextmanager
def signals_as_interrupts():
    """While the block runs, SIGTERM and Ctrl-C raise KeyboardInterrupt (SIGTERM as Terminated),
    or wait for a safe point inside `held_interrupts()`. Only the main thread receives signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def raise_held_interrupt() -> None:
    """At a safe point: raise the interrupt that arrived while held, if any."""
    signum, _Signals.pending = _Signals.pending, None
    if signum is not None:
        raise _interrupt(signum)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'model': {'units': 8}} -> {'model.units': 8}; lists stay whole, as one param."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def process_start_time(pid: int) -> str | None:
    """When process `pid` started (seconds since the epoch, as text), or None if it is gone.

    With the pid it tells a live run's process from a later process that reuses the pid.
    """
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None


def process_tags() -> dict[str, str]:
    """The tags that let a later process on this store tell whether this one is still alive."""
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        START_TAG: process_start_time(os.getpid()) or "",
    }


def mark_dead_runs(uri: str) -> list[str]:
    """Close FAILED every RUNNING run of this host whose process is gone; returns their ids.

    MLflow has no notion of a run's owner, so each run records its host, pid and the pid's start
    time (`process_tags`). Runs of other hosts are left alone: their pids say nothing here.
    """
    client = open_client(uri)
    host = socket.gethostname()
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    running = client.search_runs(
        experiments,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
        max_results=1000,
    )
    closed = []
    for run in running:
        tags = run.data.tags
        pid = tags.get(PID_TAG, "")
        if not pid.isdigit() or process_start_time(int(pid)) == tags.get(START_TAG):
            continue  # alive (or not ours to judge)
        reason = DEAD.format(pid=pid, host=host)
        retry_locked(client.set_tag, run.info.run_id, "status_reason", reason)
        retry_locked(client.set_terminated, run.info.run_id, "FAILED")
        closed.append(run.info.run_id)
    if closed:
        print(
            f"Marked {len(closed)} run(s) left RUNNING by a dead process FAILED: {', '.join(closed)}"
        )
    return closed


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
def open_run(
    uri: str,
    experiment_name: str,
    run_name: str | None,
    tags: dict[str, str],
    system_metrics: bool = True,
    system_metrics_interval: float = 10.0,
    run_id: str | None = None,
):
    """Start (or, with `run_id`, reopen) an MLflow run and make it the active one; yields it.

    The run closes FINISHED, FAILED (with the error in tags) or KILLED (interrupted, or stopped
    on purpose by RunStopped); SIGTERM counts as an interrupt, and both wait for a safe point
    inside `held_interrupts()`. An exception leaving the block
    carries the run id as `exc.run_id`. With `system_metrics`, MLflow samples CPU, memory, disk,
    network (and GPU, through NVML) every `system_metrics_interval` seconds while it is open.
    """
    import mlflow

    quiet_mlflow_logs()
    mlflow.set_tracking_uri(uri)
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(system_metrics_interval)
    with signals_as_interrupts():
        # One process at a time creates a new store's tables, the experiment and the run.
        with store_lock(uri):
            client = mlflow.MlflowClient(uri)
            if run_id:
                experiment_id = client.get_run(run_id).info.experiment_id
            else:
                experiment_id = ensure_experiment(client, experiment_name, uri)
            run = retry_locked(
                mlflow.start_run,
                run_id=run_id,
                experiment_id=experiment_id,
                run_name=None if run_id else run_name,
                tags={**tags, **process_tags()},
                log_system_metrics=system_metrics,
            )
        try:
            yield run
        except BaseException as exc:
            exc.run_id = run.info.run_id
            status, why = outcome(exc)
            try:
                close(status, why)
            except Exception as close_error:  # noqa: BLE001 - keep the original error
                print(f"Warning: could not close MLflow run: {close_error}", file=sys.stderr)
            raise
        close("FINISHED")


def close(status: str, tags: dict[str, str] | None = None) -> None:
    """End the active run with `status`, tagged with why; waits for queued metrics."""
    import mlflow

    if tags:
        retry_locked(mlflow.set_tags, tags)
    retry_locked(mlflow.end_run, status=status)  # flushes async logging, stops system metrics


def epoch_logger():
    """A Keras callback logging each epoch's metrics and learning rate to the active run.

    MLflow's asynchronous logging (`synchronous=False`) queues the writes on its own thread, so
    a slow or locked store never stalls training; ending the run waits for the queue.
    """
    import keras
    import mlflow

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            lr = getattr(self.model.optimizer, "learning_rate", None)
            if lr is not None:
                metrics["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
            mlflow.log_metrics(metrics, step=epoch, synchronous=False)

    return EpochLogger()
