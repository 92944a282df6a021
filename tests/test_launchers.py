"""Hydra's launchers under the sweeper: submitit (its local variant standing in for SLURM, which
this machine lacks) and joblib, each running a batch of trials in processes of their own."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from test_sweeps import TINY, parents_and_children, study_trials, sweep

from pipeline.config import CONF_DIR

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
pytest.importorskip("hydra_plugins.hydra_joblib_launcher")


def test_the_slurm_config_asks_for_one_gpu_per_trial():
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            ["hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.nodes) == (1, 1, 1)
    assert launcher.partition == "gpu" and launcher.timeout_min == 120


def assert_one_parent_with(store: str, trials: int) -> None:
    assert sorted(t.number for t in study_trials(store)) == list(range(trials))
    [parent], children = parents_and_children(store)
    assert len(children) == trials
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.info.status for c in children} <= {"FINISHED", "KILLED"}  # KILLED: pruned
    assert parent.info.status == "FINISHED"


@pytest.mark.slow
def test_submitit_local_runs_a_batch_of_trials_as_jobs(store, tmp_path):
    args = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    sweep(*TINY, *args, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", cwd=tmp_path)
    assert_one_parent_with(store, 2)
    assert list(tmp_path.glob("multirun/*/*/.submitit/*/*_result.pkl"))  # submitit ran them


@pytest.mark.slow
def test_joblib_sweep_exits_when_its_trials_are_done(store, tmp_path):
    # It used to sit for about five minutes after the last trial; the timeout bounds the exit.
    args = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    sweep(*TINY, *args, "hydra.sweeper.n_trials=4", cwd=tmp_path, timeout=240)
    assert_one_parent_with(store, 4)
