"""Optuna sweeps through `python -m pipeline.train -m`: one parent MLflow run with a child per
trial, pruning, resume, cooperating workers and failing trials; plus plain Hydra multiruns."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from conftest import child_env, run_cli, runs_in, sweeps_together
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from pipeline.sweeps import storage as sweep_storage
from pipeline.sweeps.space import SearchSpace

# A tiny search every sweep test shares: seconds per trial on two CPU cores.
TINY = ["trainer=smoke", "model.units=choice(4,8)", "hydra/sweeper=rnn_optuna"]
TINY += ["tracking.log_model=false"]


def journal(store: str) -> str:
    return sweep_storage.default_storage(store)


def study_trials(store: str) -> list[optuna.trial.FrozenTrial]:
    """All trials of the single study in the sweep's default journal beside the MLflow store."""
    st = sweep_storage.open_storage(journal(store))
    [summary] = optuna.get_all_study_summaries(st)
    return optuna.load_study(study_name=summary.study_name, storage=st).trials


def parents_and_children(store: str):
    runs = runs_in(store)
    parents = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def sweep(*args: str, cwd: Path, **kwargs):
    result = run_cli("-m", *args, cwd=cwd, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# --- in-process: search space, stale trials, plugin discovery ------------------------------------


def test_search_space_maps_hydra_sweep_grammar_to_optuna():
    space = SearchSpace.build(
        {
            "model.cell": "choice(simple_rnn, lstm, gru)",
            "model.units": "tag(log, int(interval(16, 256)))",
            "model.num_layers": "range(1, 4)",
            "model.dropout": "interval(0.0, 0.5)",
            "trainer.learning_rate": "tag(log, interval(1e-4, 1e-2))",
        },
        ["trainer=smoke", "model.bidirectional=true,false", "model.dropout=0.1"],
    )
    d = space.distributions
    assert d["model.cell"] == CategoricalDistribution(["simple_rnn", "lstm", "gru"])
    assert d["model.units"] == IntDistribution(16, 256, log=True)
    assert d["model.num_layers"] == IntDistribution(1, 3)  # Hydra's range excludes its stop
    assert d["trainer.learning_rate"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert d["model.bidirectional"] == CategoricalDistribution([True, False])
    assert "model.dropout" not in d  # fixed on the command line: not searched
    assert space.fixed == ["trainer=smoke", "model.dropout=0.1"]
    params = {"model.cell": "gru", "model.bidirectional": False, "trainer.learning_rate": 0.002}
    assert space.command(params) == (
        "python -m pipeline.train trainer=smoke model.dropout=0.1 model.cell=gru "
        "model.bidirectional=false trainer.learning_rate=0.002"
    )


def test_stale_running_trial_is_failed_and_requeued(tmp_path):
    path = str(tmp_path / "journal.log")
    storage = sweep_storage.open_storage(path)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask({"x": IntDistribution(1, 9)})  # a worker claims it, then dies
    fresh = study.ask({"x": IntDistribution(1, 9)})
    fresh.set_user_attr(sweep_storage.HEARTBEAT_ATTR, 4e9)  # far future: alive
    failed = sweep_storage.fail_stale_trials(study, storage, grace_period=0, retries=1)
    assert failed == [trial.number]
    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.FAIL, 1: TrialState.RUNNING, 2: TrialState.WAITING}
    assert study.trials[2].params == {"x": trial.params["x"]}  # retried with the same values


def test_a_database_uses_optunas_own_heartbeat_and_retry(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = sweep_storage.open_storage(url, heartbeat_interval=1, grace_period=1, retries=1)
    assert sweep_storage.optuna_heartbeat(storage)
    study = optuna.create_study(storage=storage, study_name="s")
    dead = study.ask({"x": IntDistribution(1, 9)})
    alive = study.ask({"x": IntDistribution(1, 9)})
    sweep_storage.stamp(storage, dead)
    time.sleep(2.5)  # past the grace period for `dead`; `alive` beats just before the check
    sweep_storage.stamp(storage, alive)
    failed = sweep_storage.fail_stale_trials(study, storage, grace_period=1, retries=1)
    assert failed == [dead.number]
    # The beats live in Optuna's heartbeat table, not in the journal's user attr.
    assert all(sweep_storage.HEARTBEAT_ATTR not in t.user_attrs for t in study.trials)
    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.FAIL, 1: TrialState.RUNNING, 2: TrialState.WAITING}
    assert study.trials[2].params == dead.params
    assert study.trials[2].system_attrs["failed_trial"] == dead.number


def test_sweeper_plugin_is_discovered():
    result = run_cli("--info", "plugins")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RnnOptunaSweeper" in result.stdout


# --- end to end through subprocesses ------------------------------------------------------------


RNN_SEARCH = [
    "hparams_search=rnn",
    "trainer=smoke",
    "tracking.log_model=false",
    "model.units=choice(4,8)",  # the command line narrows the search to keep trials tiny
]


@pytest.mark.slow
def test_rnn_search_runs_trials_as_children_of_one_parent_and_resumes(store, tmp_path):
    import mlflow

    result = sweep(*RNN_SEARCH, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    trials = study_trials(store)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert {"model.cell", "model.num_layers", "trainer.learning_rate"} <= set(trials[0].params)
    [parent], children = parents_and_children(store)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.tags["trial_number"] for c in children) == ["0", "1"]
    assert {c.data.tags["trial_state"] for c in children} == {"COMPLETE"}
    assert parent.data.metrics["trials_complete"] == 2 and "best_value" in parent.data.metrics
    assert parent.data.params["metric"] == "val_accuracy"
    assert parent.data.params["direction"] == "maximize"
    artifacts = {a.path for a in mlflow.MlflowClient(store).list_artifacts(parent.info.run_id)}
    assert "optimization_results.yaml" in artifacts
    assert {"optimization_history.png", "parallel_coordinate.png"} <= artifacts
    assert "reproduce the best trial:" in result.stdout
    command = result.stdout.rsplit("reproduce the best trial:", 1)[1].strip()
    assert command.startswith("python -m pipeline.train hparams_search=rnn trainer=smoke")
    # Each trial's job wrote its own output folder.
    assert len(list(tmp_path.glob("multirun/*/*/*/.hydra/config.yaml"))) == 2

    # The same command with a larger total resumes the study: it runs only the missing trial.
    sweep(*RNN_SEARCH, "hydra.sweeper.n_trials=3", cwd=tmp_path)
    trials = study_trials(store)
    assert [t.number for t in trials] == [0, 1, 2]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    # The resumed sampler does not replay the proposals of the first invocation.
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3
    # One study, one parent: the resumed sweep reopens it and refreshes its summary.
    [again], children = parents_and_children(store)
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.tags["trial_number"] for c in children) == ["0", "1", "2"]
    assert again.data.metrics["trials_complete"] == 3
    best = max(trials, key=lambda t: t.value)
    assert again.data.tags["best_trial"] == str(best.number)


@pytest.mark.slow
def test_pruned_trials_are_pruned_in_optuna_and_killed_in_mlflow(store, tmp_path):
    # A threshold no accuracy reaches: every trial is pruned after its first epoch.
    sweep(
        *TINY,
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.lower=2.0",
        "hydra.sweeper.n_trials=2",
        cwd=tmp_path,
    )
    assert [t.state for t in study_trials(store)] == [TrialState.PRUNED] * 2
    [parent], children = parents_and_children(store)
    assert len(children) == 2 and parent.data.metrics["trials_pruned"] == 2
    for child in children:
        assert child.info.status == "KILLED"
        assert child.data.tags["pruned"] == "true" and child.data.tags["trial_state"] == "PRUNED"


@pytest.mark.slow
def test_two_workers_share_one_study_with_exactly_n_trials(store, tmp_path):
    sweeps_together([*TINY, "hydra.sweeper.n_trials=3"], 2, tmp_path, child_env())
    trials = study_trials(store)
    assert sorted(t.number for t in trials) == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    [parent], children = parents_and_children(store)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.tags["trial_number"] for c in children) == ["0", "1", "2"]
    assert parent.data.metrics["trials_complete"] == 3


@pytest.mark.slow
def test_failing_trial_does_not_stop_the_sweep_until_the_budget(store, tmp_path):
    # units=-1 fails validation in the job. Seeds 2, 3, 4 (seed + trial number) draw 8, -1, 8:
    # one failure between two trials.
    args = [*TINY[:1], *TINY[2:], "hydra/sweeper/sampler=random"]
    seeded = ["hydra.sweeper.sampler.seed=2", "hydra.sweeper.n_trials=2"]
    sweep(*args, *seeded, "model.units=choice(8,-1)", cwd=tmp_path)
    trials = study_trials(store)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert "model.units" in trials[1].user_attrs["error"]
    # Only failures: the sweep stops once more than max_failures trials failed.
    result = run_cli(
        "-m", *args, "model.units=choice(-1,-2)", "hydra.sweeper.max_failures=1", cwd=tmp_path
    )
    assert result.returncode != 0
    assert "more than hydra.sweeper.max_failures=1" in result.stderr


@pytest.mark.slow
def test_plain_multirun_runs_every_combination(store, tmp_path):
    sweep(
        "model=lstm,gru",
        "data=sine,sunspots",
        "trainer=smoke",
        "model.units=4",
        "tracking.log_model=false",
        cwd=tmp_path,
    )
    runs = runs_in(store)
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    pairs = {(r.data.params["model.cell"], r.data.params["data.name"]) for r in runs}
    assert pairs == {(c, d) for c in ("lstm", "gru") for d in ("sine", "sunspots")}
    assert len(list(tmp_path.glob("multirun/*/*/*/.hydra"))) == 4
