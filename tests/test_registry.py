"""`hydra.sweeper.register_best=NAME`: a sweep registers its best trial's model under NAME in
MLflow's model registry, and the alias `champion` moves only to a version that beats it."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
from conftest import run_cli, runs_in

from pipeline.sweeps import registry
from pipeline.sweeps import storage as sweep_storage
from pipeline.sweeps.job import RUN_ID_ATTR

NAME = "rnn-best"
TINY = ["trainer=smoke", "model.units=choice(4,8)", "hydra/sweeper=rnn_optuna"]
REGISTER = f"hydra.sweeper.register_best={NAME}"


def sweep(*args: str, cwd: Path):
    result = run_cli("-m", *args, REGISTER, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def best_trial(store: str) -> optuna.trial.FrozenTrial:
    """The best trial of the single study in the sweep's default journal beside the store."""
    st = sweep_storage.open_storage(sweep_storage.default_storage(store))
    [summary] = optuna.get_all_study_summaries(st)
    return optuna.load_study(study_name=summary.study_name, storage=st).best_trial


def fake_champion(client, metric: str, direction: str, value: float) -> str:
    """A version of NAME scored by an earlier sweep (tags only, no model), with the alias on it."""
    client.create_registered_model(NAME)
    tags = {"study_name": "earlier", "metric": metric, "direction": direction, "value": value}
    version = str(client.create_model_version(NAME, "file:///nowhere/model", tags=tags).version)
    client.set_registered_model_alias(NAME, registry.ALIAS, version)
    return version


def versions_of(client) -> list:
    return sorted(client.search_model_versions(f"name = '{NAME}'"), key=lambda v: int(v.version))


def champion_of(client):
    return client.get_model_version_by_alias(NAME, registry.ALIAS)


@pytest.mark.parametrize(
    ("direction", "new", "old", "moves"),
    [
        ("maximize", 0.9, 0.8, True),
        ("maximize", 0.8, 0.9, False),
        ("minimize", 0.1, 0.2, True),
        ("minimize", 0.2, 0.1, False),
        ("maximize", 0.9, 0.9, False),  # a tie keeps the champion
    ],
)
def test_a_version_beats_the_champion_only_in_the_studys_direction(direction, new, old, moves):
    ours = registry.Score("2", "val_metric", direction, new)
    champion = registry.Score("1", "val_metric", direction, old)
    assert ours.comparable(champion)
    assert ours.beats(champion) is moves


def test_scores_on_another_metric_or_direction_are_not_comparable():
    ours = registry.Score("2", "val_accuracy", "maximize", 0.9)
    assert not ours.comparable(registry.Score("1", "val_loss", "minimize", 0.1))
    assert not ours.comparable(registry.Score("1", "val_accuracy", "minimize", 0.1))
    assert not ours.comparable(registry.Score("1", None, None, None))  # registered by hand


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_register_best_without_logged_models_is_refused_before_any_trial(store, tmp_path):
    result = run_cli("-m", *TINY, "tracking.log_model=false", REGISTER, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: `hydra.sweeper.register_best=rnn-best`")
    assert "`tracking.log_model=false`" in error
    assert runs_in(store) == []  # no parent run, no trial
    assert not Path(sweep_storage.default_storage(store)).exists()  # no study either
    assert mlflow.MlflowClient(store).search_registered_models() == []


@pytest.mark.slow
def test_a_sweep_registers_its_best_trial_and_moves_champion_past_a_worse_one(store, tmp_path):
    client = mlflow.MlflowClient(store)
    worse = fake_champion(client, "val_accuracy", "maximize", -1.0)

    result = sweep(*TINY, "hydra.sweeper.n_trials=2", cwd=tmp_path)
    best = best_trial(store)
    champion = champion_of(client)
    assert str(champion.version) == "2" and champion.run_id == best.user_attrs[RUN_ID_ATTR]
    assert champion.tags["metric"] == "val_accuracy"
    assert champion.tags["direction"] == "maximize"
    assert float(champion.tags["value"]) == best.value
    assert champion.tags["trial_number"] == str(best.number)
    assert champion.tags["study_name"].startswith("sweep-mnist1d-")
    assert (
        f"[sweep] Registered {NAME} version 2 (trial {best.number}, val_accuracy "
        f"{best.value:.4g}) and moved alias champion to it from version {worse} (-1)"
    ) in result.stdout
    # What predict resolves: `models:/NAME@champion` is the best trial's logged model.
    info = mlflow.models.get_model_info(f"models:/{NAME}@{registry.ALIAS}")
    assert info.run_id == best.user_attrs[RUN_ID_ATTR]
    assert info.signature is not None


@pytest.mark.slow
def test_a_worse_best_leaves_the_champion_and_a_run_is_registered_once(store, tmp_path):
    client = mlflow.MlflowClient(store)
    # A loss no trial reaches: the sweep's best (minimized val_loss) cannot beat it.
    better = fake_champion(client, "val_loss", "minimize", 0.0)
    args = [*TINY, "data=sine", "hydra.sweeper.n_trials=1"]

    result = sweep(*args, cwd=tmp_path)
    best = best_trial(store)
    assert [str(v.version) for v in versions_of(client)] == [better, "2"]
    ours = versions_of(client)[1]
    assert ours.run_id == best.user_attrs[RUN_ID_ATTR] and ours.tags["direction"] == "minimize"
    assert str(champion_of(client).version) == better
    assert (
        f"[sweep] Registered {NAME} version 2 (trial 0, val_loss {best.value:.4g}); "
        f"champion stays at version {better} (0 beats {best.value:.4g})"
    ) in result.stdout

    # A champion chosen by another metric: not comparable, so the alias stays, with a warning.
    tags = {"metric": "val_mae", "direction": "minimize"}
    other = str(client.create_model_version(NAME, "file:///nowhere/model", tags=tags).version)
    client.set_registered_model_alias(NAME, registry.ALIAS, other)
    # The study is complete: this runs no trial, and finds trial 0's run already registered.
    again = sweep(*args, cwd=tmp_path)
    assert [str(v.version) for v in versions_of(client)] == [better, "2", other]
    assert str(champion_of(client).version) == other
    assert f"[sweep] {NAME} version 2 already holds trial 0" in again.stdout
    assert f"champion stays at version {other} (chosen by val_mae, minimize" in again.stdout
    assert (
        f"Warning: the champion of {NAME} (version {other}) was chosen by val_mae, minimize; "
        "this sweep optimizes val_loss, minimize."
    ) in again.stderr
    assert f"MlflowClient('{store}').set_registered_model_alias('{NAME}', 'champion', '2')" in (
        again.stderr
    )
