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
import time
from typing import Any

from pipeline.config import PipelineError
from pipeline.tracking.store import (
    ensure_experiment,
    open_client,
    quiet_mlflow_logs,
    retry_locked,
    server_answers,
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
        run_id = run.info.run_id
        try:
            yield run
        except BaseException as exc:
            exc.run_id = run_id
            status, why = outcome(exc)
            if isinstance(exc, TrackingUnreachable) and not server_answers(uri):
                raise  # closing would wait through MLflow's retries again, for nothing
            try:
                close(status, why)
            except Exception as close_error:  # noqa: BLE001 - keep the original error
                if not server_answers(uri):
                    raise TrackingUnreachable(uri, run_id, "the run's results are") from exc
                print(f"Warning: could not close MLflow run: {close_error}", file=sys.stderr)
            raise
        try:
            close("FINISHED")
        except Exception as exc:
            if not server_answers(uri):
                raise TrackingUnreachable(uri, run_id, "the end of the run is") from exc
            raise


def close(status: str, tags: dict[str, str] | None = None) -> None:
    """End the active run with `status`, tagged with why; waits for queued metrics."""
    import mlflow

    if tags:
        retry_locked(mlflow.set_tags, tags)
    retry_locked(mlflow.end_run, status=status)  # flushes async logging, stops system metrics


class TrackingUnreachable(PipelineError):
    """The tracking server stopped answering mid-run and stayed down through MLflow's retries."""

    def __init__(self, uri: str, run_id: str, missing: str):
        super().__init__(
            f"The MLflow tracking server at {uri} stopped answering during run {run_id} and did "
            f"not come back within MLflow's retries ({retry_window()}): {missing} not in it, and "
            "the run could not be closed there (the next run on this machine marks it FAILED). "
            "Training's last epoch backup is kept: start the server again, then continue with "
            f"`resume={run_id}` and the same overrides. For longer outages, raise "
            "$MLFLOW_HTTP_REQUEST_MAX_RETRIES."
        )


def retry_window() -> str:
    """MLflow's HTTP retry settings, and about how long one request keeps trying with them
    (urllib3's backoff: none before the first retry, then factor x 2^(n-1) s, at most 120 s)."""
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    )

    retries, factor = (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(),
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get(),
    )
    seconds = sum(min(120.0, factor * 2 ** (n - 1)) for n in range(2, retries + 1))
    return (
        f"MLFLOW_HTTP_REQUEST_MAX_RETRIES={retries}, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR={factor}: "
        f"about {seconds:.0f} s per request"
    )


def spans(steps: list[int]) -> str:
    """0-based steps as 1-based epoch ranges: [1, 2, 3, 7] -> "2-4, 8"."""
    parts, start = [], None
    for i, step in enumerate(steps):
        if start is None:
            start = step
        if i + 1 == len(steps) or steps[i + 1] != step + 1:
            parts.append(f"{start + 1}" if start == step else f"{start + 1}-{step + 1}")
            start = None
    return ", ".join(parts)


def epoch_logger():
    """A Keras callback logging each epoch's metrics and learning rate to the active run.

    MLflow's asynchronous logging (`synchronous=False`) queues the writes on its own thread, so
    a slow or locked store never stalls training, and retries each one over HTTP for a while
    (`retry_window`): a tracking server that is down for less than that gets every epoch late.
    A write that ran out of retries is only reported in MLflow's log, so the logger keeps each
    epoch's metrics until `deliver` has checked them once training is over.
    """
    import keras
    import mlflow
    from mlflow.exceptions import MlflowException

    class EpochLogger(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.sent = []  # (epoch, metrics, timestamp in ms, RunOperations)

        def on_epoch_end(self, epoch, logs=None):
            metrics = {k: float(v) for k, v in (logs or {}).items()}
            lr = getattr(self.model.optimizer, "learning_rate", None)
            if lr is not None:
                metrics["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
            stamp = int(time.time() * 1000)
            ops = mlflow.log_metrics(metrics, step=epoch, timestamp=stamp, synchronous=False)
            self.sent.append((epoch, metrics, stamp, ops))

        def deliver(self) -> None:
            """Wait for every epoch's write and send the ones that failed again, synchronously,
            with their own step and time. TrackingUnreachable when the server is still down."""
            failed = []
            for epoch, metrics, stamp, ops in self.sent:
                try:
                    ops.wait()
                except MlflowException:
                    failed.append((epoch, metrics, stamp))
            self.sent.clear()
            if not failed:
                return
            steps = [epoch for epoch, _, _ in failed]
            try:
                for epoch, metrics, stamp in failed:
                    mlflow.log_metrics(metrics, step=epoch, timestamp=stamp, synchronous=True)
            except MlflowException as exc:
                uri = mlflow.get_tracking_uri()
                if server_answers(uri):
                    raise
                run_id = mlflow.active_run().info.run_id
                raise TrackingUnreachable(
                    uri, run_id, f"the metrics of epoch(s) {spans(steps)} are"
                ) from exc
            mlflow.set_tag("tracking.resent_steps", ",".join(map(str, steps)))
            print(
                f"Warning: the tracking server took no metrics for epoch(s) "
                f"{spans(steps)} during training (MLflow's retries "
                f"ran out: {retry_window()}); they were sent again now, each with its own step "
                "and time (tag tracking.resent_steps).",
                file=sys.stderr,
            )

    return EpochLogger()
