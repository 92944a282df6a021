"""Studies in a database (PostgreSQL, MySQL): connection settings for long sweeps, a cold start
that any number of workers may share, and one-paragraph errors for a missing driver or server.

Optuna 5.1's RDBStorage creates its tables with SQLAlchemy's `create_all` (look, then CREATE)
and stamps alembic's version table, with no lock (optuna/optuna#1092: run `optuna create-study`
once first). Workers that start together on an empty database all find the tables missing and
all create them; the losers fail with `duplicate key value violates unique constraint
"pg_type_typname_nsp_index"`, `relation ... already exists` (PostgreSQL) or `Table ... already
exists` (MySQL). Optuna guards only its version row. Once the winner has committed, the tables
exist and building the storage again merely checks them, so we retry the construction after a
short random pause when, and only when, the error says something already exists. The
retry is dialect-agnostic and runs before any connection of ours exists.

Claiming trials ("count the study's trials, then ask for the missing ones") and creating the
study's parent MLflow run are read-then-write steps that workers on several machines must not
interleave, or they overshoot `n_trials` and open two parents. `advisory_lock` serialises them
with the server's own named locks: `pg_advisory_lock` on PostgreSQL, `GET_LOCK` on MySQL.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import random
import re
import sys
import time

import sqlalchemy
from optuna.storages import RDBStorage
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from pipeline.config.errors import PipelineError

# A sweep holds pooled connections for hours, idle while a trial trains: test each one before use
# (a server restart, idle timeout or NAT drop leaves dead ones behind) and replace it after an hour
# anyway (below MySQL's default wait_timeout of 8 h). Optuna itself sets pre-ping for MySQL only.
POOL_SETTINGS = {"pool_pre_ping": True, "pool_recycle": 3600}
CONNECT_TIMEOUT_S = 10  # an unreachable host fails in seconds, not after the OS's minutes
TIMEOUT_DRIVERS = ("psycopg2", "psycopg", "pymysql", "mysqldb")  # take connect_timeout=seconds
CREATION_ATTEMPTS = 6  # the pauses add up to at most about 8 s
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
URL_FORMS = {
    "postgresql": "postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
    "mysql": "mysql+pymysql://USER:PASSWORD@HOST:PORT/DATABASE",
}


def open_database(url: str, **heartbeat) -> RDBStorage:
    """Optuna's RDBStorage on `url`, safe to call from many workers at once on an empty database.

    `heartbeat` holds RDBStorage's own heartbeat arguments (`heartbeat_interval`, `grace_period`,
    `heartbeat_stale_trial_callback`), given by the sweeper, not by jobs.

    Raises PipelineError (one paragraph) for a bad URL, a missing driver or a server that cannot
    be reached; other database errors propagate unchanged.
    """
    parsed = _parse(url)
    attempt = 0
    while True:
        try:
            storage = RDBStorage(url, engine_kwargs=engine_settings(parsed), **heartbeat)
            ride_out_restarts(storage.engine, parsed)
            return storage
        except ImportError as exc:  # Optuna re-raises the driver's ImportError as its own
            raise missing_driver(parsed, exc) from None
        except sa_exc.DBAPIError as exc:
            attempt += 1
            if lost_creation_race(exc) and attempt < CREATION_ATTEMPTS:
                time.sleep(random.uniform(0.05, 0.25) * 2 ** (attempt - 1))
                continue
            if isinstance(exc, sa_exc.OperationalError):
                raise unreachable(parsed, exc) from None
            raise


def engine_settings(url: URL) -> dict:
    """SQLAlchemy engine arguments for a server database; none for SQLite.

    SQLite has no server to drop connections, and recycling would empty an in-memory database.
    """
    if url.get_backend_name() == "sqlite":
        return {}
    settings: dict = dict(POOL_SETTINGS)
    # Arguments given in the URL's query win: the user chose them.
    if url.get_driver_name() in TIMEOUT_DRIVERS and "connect_timeout" not in url.query:
        settings["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return settings


RECONNECT_PATIENCE_S = 300  # how long a running sweep waits for its database to come back


def ride_out_restarts(engine: sqlalchemy.Engine, url: URL) -> None:
    """Make `engine`'s new connections wait for a database that went away mid-sweep.

    Pre-ping finds a pooled connection dead after a server restart and opens a new one at
    once; while the server is still down, that fails and so would the trial, the heartbeat or
    the sweeper's bookkeeping. SQLAlchemy's `do_connect` event (its documented hook for
    replacing the DBAPI connect call) retries the connect with backoff for up to
    RECONNECT_PATIENCE_S instead, with one warning. The first connection, in `open_database`,
    is made before this is attached: a server that is not there at all fails in seconds.
    """
    if url.get_backend_name() == "sqlite":
        return  # a file, no server to wait for
    where = host_and_port(url)

    @sqlalchemy.event.listens_for(engine, "do_connect")
    def connect(dialect, conn_rec, cargs, cparams):
        deadline = time.monotonic() + RECONNECT_PATIENCE_S
        pause, warned = 0.5, False
        while True:
            try:
                return dialect.loaded_dbapi.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError:
                if time.monotonic() + pause > deadline:
                    raise
                if not warned:
                    print(
                        f"Warning: lost the Optuna storage database at {where}; retrying for up "
                        f"to {RECONNECT_PATIENCE_S} s.",
                        file=sys.stderr,
                        flush=True,
                    )
                    warned = True
                time.sleep(pause)
                pause = min(pause * 2, 10.0)


def lost_creation_race(exc: sa_exc.DBAPIError) -> bool:
    """Whether the error is another worker's table, type, index or version row, created first."""
    text = str(exc.orig).lower()
    return "already exists" in text or "duplicate" in text


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
        parsed.get_dialect()  # an unknown scheme fails here, before any connection
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError):
        raise PipelineError(
            f"`hydra.sweeper.storage={_hide_password(url)}` is neither a file path nor a database "
            "URL SQLAlchemy knows. Write a path for an Optuna journal file, or a URL such as "
            f"{URL_FORMS['postgresql']} (not postgres://) or {URL_FORMS['mysql']}."
        ) from None
    return parsed


def missing_driver(url: URL, exc: ImportError) -> PipelineError:
    cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
    driver, backend = url.get_driver_name(), url.get_backend_name()
    module = getattr(cause, "name", None) or driver
    if driver == "psycopg":  # SQLAlchemy 2.1's driver for a plain postgresql:// URL
        fix = 'Install it with `pip install -e ".[postgres]"` (psycopg 3)'
    elif driver == "psycopg2":
        fix = (
            "Install it with `pip install psycopg2-binary`, or drop `+psycopg2` from the URL "
            'and install psycopg 3 with `pip install -e ".[postgres]"`'
        )
    elif driver == "pymysql":
        fix = 'Install it with `pip install -e ".[mysql]"` (PyMySQL)'
    elif backend == "mysql":
        fix = (
            f'Install PyMySQL with `pip install -e ".[mysql]"` and write the URL as '
            f"{URL_FORMS['mysql']}, or install the package that provides `{module}`"
        )
    else:
        fix = f"Install the Python package that provides `{module}`"
    return PipelineError(
        f"The Optuna storage {url.render_as_string(hide_password=True)} needs the database "
        f"driver `{module}`, which is not installed. {fix}."
    )


def host_and_port(url: URL) -> str:
    """HOST:PORT of a database URL, with the backend's default port where the URL has none."""
    return f"{url.host or 'localhost'}:{url.port or DEFAULT_PORTS.get(url.get_backend_name(), '?')}"


def unreachable(url: URL, exc: sa_exc.OperationalError) -> PipelineError:
    backend = url.get_backend_name()
    where = f"{host_and_port(url)} ({backend}, database {url.database})"
    if backend == "sqlite":
        where = f"{url.database} (sqlite)"
    lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
    reason = lines[0].rstrip(".")
    if url.password:
        reason = reason.replace(str(url.password), "***")
    form = URL_FORMS.get(backend, "DIALECT://USER:PASSWORD@HOST:PORT/DATABASE")
    return PipelineError(
        f"Cannot open the Optuna storage database at {where}: {reason}. Start the server or "
        "make it reachable from this machine, check the user, password and database in "
        f"`hydra.sweeper.storage` ({form}), or leave `hydra.sweeper.storage` unset to keep the "
        "study in a journal file beside the MLflow store."
    )


def _hide_password(url: str) -> str:
    """USER:PASSWORD@ -> USER:***@, also in text SQLAlchemy cannot parse."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


LOCK_NAME = "pipeline.sweeps.claim"
LOCK_WAIT_S = 600  # MySQL's GET_LOCK gives up after this; a claim takes milliseconds


@functools.cache
def _lock_engine(url: str) -> sqlalchemy.Engine:
    # One small engine per database, beside Optuna's: a lock belongs to the connection holding it.
    parsed = _parse(url)
    engine = sqlalchemy.create_engine(url, pool_size=1, **engine_settings(parsed))
    ride_out_restarts(engine, parsed)
    return engine


@contextlib.contextmanager
def advisory_lock(url: str, name: str = LOCK_NAME):
    """Hold the server's named lock `name` while the block runs (no lock for SQLite)."""
    backend = _parse(url).get_backend_name()
    if backend not in ("postgresql", "mysql"):
        yield
        return
    key = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)
    with _lock_engine(url).connect() as conn:
        if backend == "postgresql":
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            release = sqlalchemy.text("SELECT pg_advisory_unlock(:key)")
        else:
            got = conn.execute(
                sqlalchemy.text("SELECT GET_LOCK(:name, :wait)"),
                {"name": name, "wait": LOCK_WAIT_S},
            ).scalar()
            if got != 1:
                raise PipelineError(
                    f"Could not take the sweep's lock on the MySQL database within {LOCK_WAIT_S} s:"
                    " another worker holds it. Check for a hung worker on this database."
                )
            release = sqlalchemy.text("SELECT RELEASE_LOCK(:name)")
        try:
            yield
        finally:
            conn.execute(release, {"key": key, "name": name})
            conn.commit()
