"""The MLflow store as a shared resource: reachable before a run starts, safe under many
concurrent processes.

SQLite serialises writers with a lock and MLflow creates its tables on first use; eight
processes starting at once race on both ("no such column", "database is locked"). We take an
exclusive file lock beside the database while the store is first opened and the run is
created, and retry writes that still meet a locked database, with backoff.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import time
from pathlib import Path

from pipeline.errors import PipelineError


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


@contextlib.contextmanager
def store_lock(uri: str):
    """Hold an exclusive lock beside a SQLite store (a no-op for other stores)."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


def retry_locked(fn, *args, attempts: int = 8, **kwargs):
    """Call fn, retrying with jittered exponential backoff while SQLite reports a lock."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt == attempts - 1 or not is_locked_error(exc):
                raise
            time.sleep(min(5.0, 0.1 * 2**attempt) * (0.5 + random.random()))


def check_store(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any work, when the store cannot be written or reached."""
    db = sqlite_path(uri)
    if db is not None:
        folder = db.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise PipelineError(
                f"The MLflow store folder {folder} is not writable ({exc.strerror}). Make it "
                "writable, or point `tracking.uri` (or $MLFLOW_TRACKING_URI) at a writable "
                "location such as sqlite:////tmp/mlruns/mlflow.db."
            ) from None
        return
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        except requests.RequestException as exc:
            raise PipelineError(
                f"Cannot reach the MLflow tracking server at {uri} ({type(exc).__name__}). "
                "Start it (`python -m pipeline.ui` serves the project store), fix `tracking.uri` "
                "/ $MLFLOW_TRACKING_URI, or unset both to log to the local store in mlruns/."
            ) from None
