"""Where studies live, and what keeps several workers on one study honest.

A storage is given as text so it can travel to each job as a config override: a file path is an
Optuna journal file (safe for several processes on one machine, and what `optuna-dashboard PATH`
opens), `redis://...` a journal in Redis, anything else with `://` a database URL (PostgreSQL or
MySQL for many machines, opened by pipeline.sweeps.database; SQLite is not safe for parallel
writers).
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from pipeline.sweeps.database import advisory_lock, open_database
from pipeline.tracking.store import default_store_dir, sqlite_path

JOURNAL_NAME = "journal.log"
HEARTBEAT_ATTR = "heartbeat"  # user attr: last time (epoch seconds) the worker said it is alive


def default_storage(tracking_uri: str) -> str:
    """A journal file beside the MLflow store when that is a local SQLite file, else in mlruns/."""
    db = sqlite_path(tracking_uri)
    store = db.parent if db is not None else default_store_dir()
    return str(store / "optuna" / JOURNAL_NAME)


def is_journal_file(url: str) -> bool:
    return "://" not in url


def open_storage(
    url: str, heartbeat_interval: float | None = None, grace_period: float = 300, retries: int = 0
) -> BaseStorage:
    """The Optuna storage behind a path or URL (see the module docstring).

    A database opened with `heartbeat_interval` uses Optuna's own heartbeat: RUNNING trials
    silent for `grace_period` s are failed by `fail_stale_trials`, and queued again up to
    `retries` times. Journals have no heartbeat in Optuna; `heartbeat` stamps a user attr there.
    Raises PipelineError when a database cannot be opened (no driver, no server, a bad URL).
    """
    if is_journal_file(url):
        from optuna.storages.journal import JournalFileBackend

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        # The backend's default lock is the one optuna-dashboard uses too.
        return JournalStorage(JournalFileBackend(url))
    if url.startswith("redis"):
        from optuna.storages.journal import JournalRedisBackend

        return JournalStorage(JournalRedisBackend(url))
    if not heartbeat_interval:
        return open_database(url)
    return open_database(
        url,
        heartbeat_interval=int(max(1, heartbeat_interval)),  # Optuna wants whole seconds
        grace_period=int(max(1, grace_period)),
        heartbeat_stale_trial_callback=_retry(retries),
    )


def _retry(retries: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(retries) if retries else None


def optuna_heartbeat(storage: BaseStorage) -> bool:
    """Whether the storage keeps Optuna's own heartbeat (a database opened with an interval)."""
    # Duck-typed: Optuna's base class for heartbeat storages is private (storages._heartbeat).
    return bool(getattr(storage, "get_heartbeat_interval", lambda: None)())


@contextlib.contextmanager
def claim_lock(url: str):
    """Serialise "count the trials, then ask for new ones" across workers sharing a study.

    Without it two workers can both see one trial missing and both start one. A journal file gets
    a lock file beside it, a PostgreSQL or MySQL database the server's named lock; Redis and
    SQLite get none (SQLite is not for parallel writers anyway).
    """
    if not is_journal_file(url):
        with advisory_lock(url):
            yield
        return
    from optuna.storages.journal import JournalFileOpenLock

    # A lock of our own: the journal's lock guards single writes, this one a read-then-write.
    lock = JournalFileOpenLock(f"{url}.claim", grace_period=60)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def last_sign_of_life(trial: FrozenTrial) -> float:
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    start = trial.datetime_start.timestamp() if trial.datetime_start else time.time()
    return max(float(beat), start) if beat is not None else start


def fail_stale_trials(
    study: optuna.Study, storage: BaseStorage, grace_period: float, retries: int
) -> list[int]:
    """Fail RUNNING trials silent for longer than grace_period; requeue each up to `retries` times.

    Returns the numbers of the trials failed. A worker that was killed leaves its trial RUNNING;
    this is what keeps such a trial from holding a place in `n_trials` forever. Databases use
    Optuna's `fail_stale_trials` (its heartbeat table and retry callback); journals our stamps.
    """
    if optuna_heartbeat(storage):
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return [t.number for t in running if study.trials[t.number].state == TrialState.FAIL]
    now = time.time()
    stale = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if now - last_sign_of_life(t) > grace_period
    ]
    failed = []
    retry = _retry(retries)
    for trial in stale:
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker finished or failed it first
        failed.append(trial.number)
        if retry is not None:
            retry(study, study.trials[trial.number])
    return failed


def retry_killed(study: optuna.Study, number: int, retries: int) -> None:
    """Queue a FAIL trial whose process was killed again with the same parameters, up to
    `retries` times in all (the same rule and history as Optuna's stale-trial retry)."""
    retry = _retry(retries)
    if retry is not None:
        retry(study, study.trials[number])


def stamp(storage: BaseStorage, trial: optuna.Trial) -> None:
    """Tell the storage that `trial`'s worker is alive: Optuna's heartbeat table in a database
    (which ignores a RUNNING trial until its first beat, so a new trial is stamped at once), a
    user attr in a journal."""
    if not optuna_heartbeat(storage):
        trial.set_user_attr(HEARTBEAT_ATTR, time.time())
        return
    study_id = storage.get_study_id_from_name(trial.study.study_name)
    storage.record_heartbeat(
        storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    )


@contextlib.contextmanager
def heartbeat(trials: list[optuna.Trial], interval: float | None, storage: BaseStorage):
    """While the block runs, tell the storage every `interval` seconds that each trial is alive.

    `trials` may change while the block runs (a worker pool adds and removes trials).
    """
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial in list(trials):
                with contextlib.suppress(Exception):  # a finished trial refuses stamps
                    stamp(storage, trial)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
