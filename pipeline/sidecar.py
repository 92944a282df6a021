"""MLflow in a tracking process of its own, started when a run starts.

Importing MLflow and opening its SQLite store take 2-3 s; importing TensorFlow takes longer.
Done one after the other they delay the first training step by both; done in two processes
they overlap, and the training process never imports MLflow's store at all. The training
process talks to a `pipeline.tracker.Tracker` living here through `RemoteTracker`, which has
the same methods; each call waits for its answer (a few milliseconds).

The tracking process ends when told to, or when the training process goes away without a word
(killed, out of memory): then it closes an open run FAILED, so no run is left RUNNING forever.
It ignores Ctrl-C and SIGTERM, which are the training process's to handle: that one closes the
run KILLED through it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

from pipeline.errors import PipelineError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GONE = "the training process ended without closing the run (killed, or out of memory?)"
STOPPED = "the training process stopped before it could close the run"


class TrackingError(RuntimeError):
    """An MLflow call failed in the tracking process; the message is its error."""


class RemoteTracker:
    """A `Tracker` in a tracking process started now; the same methods, called across a pipe."""

    def __init__(self, uri: str):
        import multiprocessing

        self.uri = uri
        self.info = None
        ours, theirs = multiprocessing.Pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])
        )
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.sidecar", str(theirs.fileno()), uri, sys.argv[0]],
            pass_fds=[theirs.fileno()],
            env=env,
        )
        theirs.close()
        self._conn = ours
        self._lock = threading.Lock()
        self._awaiting = False  # a call was interrupted before its answer arrived

    def _call(self, name: str, *args, **kwargs):
        with self._lock:
            try:
                if self._awaiting:  # drop the answer to the interrupted call
                    self._conn.recv()
                    self._awaiting = False
                self._conn.send((name, args, kwargs))
                self._awaiting = True
                reply = self._conn.recv()
                self._awaiting = False
            except (EOFError, OSError):
                try:
                    code = self._process.wait(10)
                except subprocess.TimeoutExpired:
                    code = None
                raise TrackingError(
                    f"The MLflow tracking process stopped (exit code {code}) during `{name}`: "
                    "see its error above. The run could not be written."
                ) from None
        if reply[0] == "ok":
            return reply[1]
        _, kind, message, is_pipeline_error = reply
        if is_pipeline_error:  # the user's to fix: same class (ConfigError...) and message
            from pipeline import errors

            error = getattr(errors, kind, PipelineError)
            raise (error if isinstance(error, type) else PipelineError)(message)
        raise TrackingError(f"{kind}: {message}")

    def open(self, *args, **kwargs):
        self.info = self._call("open", *args, **kwargs)
        return self.info

    def close(self, *args, **kwargs):
        self._call("close", *args, **kwargs)

    def import_ahead(self) -> None:
        """Nothing to do: the tracking process imported all of it while this one started."""

    def post(self, name: str, *args, **kwargs) -> None:
        """Send a call without waiting: the tracking process prints a failure as a warning."""
        from pipeline.tracker import Tracker

        if name not in Tracker.CALLS:
            raise AttributeError(name)
        with self._lock:
            try:
                self._conn.send(("post", (name, *args), kwargs))
            except OSError:
                gone = f"Warning: the MLflow tracking process is gone; `{name}` was not logged."
                print(gone, file=sys.stderr)

    def __getattr__(self, name: str):
        from pipeline.tracker import Tracker

        if name not in Tracker.CALLS:
            raise AttributeError(name)
        return lambda *args, **kwargs: self._call(name, *args, **kwargs)

    def shutdown(self, timeout: float = 60.0) -> None:
        """Ask the tracking process to end, and wait for it (it closes nothing left open)."""
        try:
            with self._lock:
                self._conn.send(("exit", (), {}))
        except OSError:
            pass
        self._conn.close()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def serve(fd: int, uri: str, source: str) -> None:
    """The tracking process: answer calls on `fd` with a Tracker, until told to exit or EOF.

    `source` is the training process's program, which MLflow records as the run's source
    (it reads sys.argv[0]).
    """
    sys.argv[0] = source
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from pipeline.tracker import Tracker

    conn = Connection(fd)
    tracker = Tracker(uri)
    try:
        tracker.warm_up()
    except Exception:  # noqa: BLE001 - only a head start: the first real call reports the error
        pass
    while True:
        try:
            name, args, kwargs = conn.recv()
        except (EOFError, OSError):
            name, args, kwargs = "gone", (), {}
        if name in ("exit", "gone"):
            if tracker.is_open:  # never a run left RUNNING
                if name == "gone":
                    tracker.close("FAILED", {"status_reason": GONE})
                else:  # interrupted before it could close the run itself
                    tracker.close("KILLED", {"status_reason": STOPPED})
            return
        if name == "post" and args and args[0] in Tracker.CALLS:
            tracker.post(*args, **kwargs)  # no answer: failures are printed as warnings
            continue
        try:
            if name not in Tracker.CALLS:
                raise ValueError(f"unknown tracker call {name!r}")
            reply = ("ok", getattr(tracker, name)(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - every error goes back to the caller
            reply = ("error", type(exc).__name__, str(exc), isinstance(exc, PipelineError))
        try:
            conn.send(reply)
        except OSError:  # the training process stopped listening (interrupted mid-call)
            pass


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], sys.argv[3])
    # Every write is done; skip the interpreter's teardown of MLflow and SQLAlchemy (about a
    # second), which the training process would otherwise wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
