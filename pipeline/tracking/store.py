"""The MLflow store: where it is, reachable before a run starts, safe under many concurrent
processes.

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
import re
import time
from pathlib import Path

from pipeline.config.errors import PipelineError


def default_store_dir(cwd: Path | None = None) -> Path:
    """The project's `mlruns/`: the nearest folder from `cwd` upwards that holds both
    `pyproject.toml` and `mlruns/` (a clone, from any of its subfolders), else `./mlruns`, as
    MLflow users expect from an installed package."""
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "mlruns").is_dir() and (folder / "pyproject.toml").is_file():
            return folder / "mlruns"
    return here / "mlruns"


def default_tracking_uri(cwd: Path | None = None) -> str:
    """SQLite in the project's mlruns/, absolute so a later change of directory does not matter."""
    return f"sqlite:///{default_store_dir(cwd) / 'mlflow.db'}"


def resolve_tracking_uri(configured: str | None) -> str:
    """`tracking.uri` wins over $MLFLOW_TRACKING_URI, which wins over the project default."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store (pipeline/cli/ui.py)."""
    if uri.startswith(("http://", "https://")):
        return uri  # already a server
    if uri == default_tracking_uri():
        return "python -m pipeline.ui"
    return f"python -m pipeline.ui --uri {uri}"


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
    if not server_answers(uri, timeout):
        raise PipelineError(
            f"Cannot reach the MLflow tracking server at {uri}. Start it (`python -m "
            "pipeline.ui` serves the project store; docs/scaling.md shows a shared `mlflow "
            "server`), fix `tracking.uri` / $MLFLOW_TRACKING_URI, or unset both to log to the "
            "local store in mlruns/."
        )


def server_answers(uri: str, timeout: float = 5.0) -> bool:
    """False when `uri` is a tracking server's address and its /health does not answer; True
    for every other store (a database or folder fails on its own, with its own message)."""
    if not uri.startswith(("http://", "https://")):
        return True
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException:
        return False
    return True


def _artifact_location(uri: str, experiment_name: str) -> str | None:
    """For a local SQLite store, keep artifacts beside it in mlruns/artifacts/<experiment>."""
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


def quiet_mlflow_logs() -> None:
    """MLflow's INFO lines (creating tables, starting the system-metrics monitor) and download
    progress bars are about MLflow, not the run; its warnings and errors still show.
    $MLFLOW_LOGGING_LEVEL and $MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR win."""
    import logging

    if "MLFLOW_LOGGING_LEVEL" not in os.environ:
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    # A progress bar per file MLflow fetches (logging a model checks its example by loading it).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def open_client(uri: str):
    """An MlflowClient on `uri`, made under the store lock: a new SQLite store's tables are
    created by the first client, and eight processes doing that at once race."""
    import mlflow

    quiet_mlflow_logs()
    with store_lock(uri):
        return mlflow.MlflowClient(tracking_uri=uri)
