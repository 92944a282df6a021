"""Optuna studies in PostgreSQL: workers that start together on an empty database, pooled
connections that die, and the messages for a missing driver or server. The server is real and
throwaway: the session's `postgres` fixture (tests/servers.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
import pytest
from conftest import child_env, free_port, run_cli, runs_in, sweeps_together
from optuna.trial import TrialState

from pipeline.config import PipelineError
from pipeline.sweeps.storage import open_storage

WORKERS = 4


@pytest.fixture
def admin(postgres):
    """An autocommit connection to the server's `postgres` database (psycopg: the test extra)."""
    import psycopg

    with psycopg.connect(f"{postgres.url}/postgres", autocommit=True) as connection:
        yield connection


@pytest.fixture
def new_database(postgres):
    """Makes databases without a single table; each call returns a new one's URL."""
    return postgres.new_database


@pytest.fixture
def empty_database(postgres) -> str:
    return postgres.new_database()


# Imports first, then opens each database the test sends, all workers at the same moment.
WORKER = """
import sys
import optuna
from pipeline.sweeps.storage import open_storage
print("ready", flush=True)
while url := sys.stdin.readline().strip():
    study = optuna.create_study(storage=open_storage(url), study_name="s", load_if_exists=True)
    trial = study.ask()
    study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
    print("done", flush=True)
"""
ROUNDS = 5  # without the guard one round fails about 2 times in 3, so five nearly always do


@pytest.mark.slow  # five rounds of four processes, each importing Optuna and SQLAlchemy
def test_workers_started_together_on_an_empty_database_share_one_study(new_database):
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER],
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    databases = []
    try:
        expect(workers, "ready")
        for _ in range(ROUNDS):
            databases.append(new_database())
            for worker in workers:
                worker.stdin.write(databases[-1] + "\n")
                worker.stdin.flush()
            expect(workers, "done")
        for worker in workers:
            worker.stdin.close()
            worker.wait(timeout=60)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for url in databases:
        trials = optuna.load_study(study_name="s", storage=open_storage(url)).trials
        assert sorted(t.number for t in trials) == list(range(WORKERS))
        assert {t.state for t in trials} == {TrialState.COMPLETE}


def expect(workers: list[subprocess.Popen], line: str) -> None:
    """Wait until every worker has printed `line`; fail with the stderr of one that died."""
    for worker in workers:
        if worker.stdout.readline() != line + "\n":
            worker.kill()
            pytest.fail(f"a worker failed:\n{worker.communicate()[1][-3000:]}")


def test_dead_pooled_connections_are_replaced_before_use(empty_database, admin):
    storage = open_storage(empty_database)
    assert storage.engine_kwargs["pool_recycle"] == 3600
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    # What a server restart or an idle timeout does to the connection now idle in the pool.
    database = empty_database.rsplit("/", 1)[1]
    others = "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    with admin.cursor() as cursor:
        cursor.execute(f"SELECT count(pg_terminate_backend(pid)) {others}", (database,))
        assert cursor.fetchone()[0] >= 1
        for _ in range(100):  # termination is asynchronous
            cursor.execute(f"SELECT count(*) {others}", (database,))
            if cursor.fetchone()[0] == 0:
                break
            time.sleep(0.05)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=1)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2


def test_unreachable_server_is_one_paragraph_naming_host_and_port():
    port = free_port()
    with pytest.raises(PipelineError) as raised:
        open_storage(f"postgresql://optuna:s3cret@127.0.0.1:{port}/optuna")
    message = str(raised.value)
    assert f"Cannot open the Optuna storage database at 127.0.0.1:{port}" in message
    assert "s3cret" not in message and "\n" not in message
    assert "`hydra.sweeper.storage` (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)" in message


@pytest.mark.parametrize(
    "url, module, fix",
    [
        ("postgresql://optuna:s3cret@127.0.0.1/optuna", "psycopg", 'pip install -e ".[postgres]"'),
        ("postgresql+psycopg2://optuna:s3cret@127.0.0.1/optuna", "psycopg2", "psycopg2-binary"),
        ("mysql+pymysql://optuna:s3cret@127.0.0.1/optuna", "pymysql", 'pip install -e ".[mysql]"'),
        ("mysql://optuna:s3cret@127.0.0.1/optuna", "MySQLdb", "mysql+pymysql://USER"),
    ],
)
def test_missing_driver_names_the_extra_to_install(monkeypatch, url, module, fix):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` fails as if not installed
    with pytest.raises(PipelineError) as raised:
        open_storage(url)
    message = str(raised.value)
    assert f"driver `{module}`, which is not installed" in message and fix in message
    assert "s3cret" not in message


def test_postgres_scheme_typo_is_explained():
    with pytest.raises(PipelineError, match="not postgres://") as raised:
        open_storage("postgres://optuna:s3cret@127.0.0.1/optuna")
    assert "s3cret" not in str(raised.value)


def test_sqlite_keeps_its_plain_engine(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    assert storage.engine_kwargs == {}  # recycling would empty an in-memory database
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=2)
    assert len(study.trials) == 2


def test_the_claim_lock_is_the_servers_advisory_lock(empty_database):
    import threading

    from pipeline.sweeps.storage import claim_lock

    events = []

    def hold():
        with claim_lock(empty_database):
            events.append("first in")
            time.sleep(1.0)
            events.append("first out")

    holder = threading.Thread(target=hold)
    holder.start()
    while not events:
        time.sleep(0.01)
    with claim_lock(empty_database):  # another connection: waits for the first to let go
        events.append("second in")
    holder.join()
    assert events == ["first in", "first out", "second in"]


# --- end to end through subprocesses ------------------------------------------------------------

COLD_SWEEP = [
    "hparams_search=rnn",
    "trainer=smoke",
    "tracking.log_model=false",
    "model.units=choice(4,8)",  # tiny trials, as in test_sweeps.py
    "hydra.sweeper.n_trials=4",
    "hydra.sweeper.study_name=cold",
]


@pytest.mark.slow
def test_two_sweeps_started_together_on_an_empty_database(store, tmp_path, empty_database):
    # The whole sweeper on a fresh database. Start-up jitter rarely lines the two storage openings
    # up; the race itself is the first test's.
    args = [*COLD_SWEEP, f"hydra.sweeper.storage={empty_database}"]
    sweeps_together(args, 2, tmp_path, child_env({"MLFLOW_TRACKING_URI": store}))
    trials = optuna.load_study(study_name="cold", storage=open_storage(empty_database)).trials
    # The server's advisory lock serialises claims: exactly n_trials, no overshoot.
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    runs = runs_in(store)
    [parent] = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.tags["trial_number"] for c in children) == ["0", "1", "2", "3"]
    assert not [r for r in runs if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_sweep_on_an_unreachable_database_prints_one_error_paragraph(store, tmp_path):
    url = f"postgresql://optuna:s3cret@127.0.0.1:{free_port()}/optuna"
    result = run_cli("-m", *COLD_SWEEP, f"hydra.sweeper.storage={url}", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Cannot open the Optuna storage database" in errors[0]
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr
