"""Asynchronous sweep workers (`hydra.sweeper.n_workers`): devices per worker, outcomes of trial
processes, and sweeps with two workers that finish, lose a trial to SIGKILL, or are interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
import psutil
import pytest
from conftest import child_env, run_cli, runs_in
from optuna.trial import TrialState

from pipeline.sweeps import job, runner, workers
from pipeline.sweeps import storage as sweep_storage

TINY = ["trainer=smoke", "model.units=choice(4,8)", "hydra/sweeper=rnn_optuna"]
TINY += ["tracking.log_model=false", "hydra.sweeper.n_workers=2"]


def test_each_worker_gets_its_own_gpu_and_a_share_of_the_cores():
    slots = workers.plan_slots(4, None, ["0", "1", "2", "3"], cores=16)
    assert [s.gpus for s in slots] == ["0", "1", "2", "3"]
    assert {s.threads for s in slots} == {4}
    # More workers than GPUs share them in turn; two per trial take neighbouring pairs.
    assert [s.gpus for s in workers.plan_slots(3, None, ["0", "1"], 2)] == ["0", "1", "0"]
    assert [s.gpus for s in workers.plan_slots(2, 2, ["4", "5", "6", "7"], 2)] == ["4,5", "6,7"]
    hidden = workers.plan_slots(2, 0, ["0", "1"], 2)  # gpus_per_trial=0: CPU only
    assert [s.gpus for s in hidden] == ["", ""] and hidden[0].env()["CUDA_VISIBLE_DEVICES"] == ""
    cpu = workers.plan_slots(2, None, [], cores=3)
    assert [s.gpus for s in cpu] == [None, None] and cpu[0].threads == 1
    assert cpu[1].describe() == "CPU, 1 thread" and slots[2].describe() == "GPU 2"


def test_a_trial_reports_the_devices_its_worker_gave_it():
    assert job.devices_of({"CUDA_VISIBLE_DEVICES": "3"}) == "GPU 3"
    assert job.devices_of({"CUDA_VISIBLE_DEVICES": "", "TF_NUM_INTRAOP_THREADS": "2"}) == (
        "CPU, 2 threads"
    )
    assert job.devices_of({}) == "CPU"


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert workers.visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert workers.visible_gpus() == []


def test_a_trial_process_outcome_comes_from_its_exit_and_its_trial(tmp_path):
    study = optuna.create_study()
    done = study.ask()
    done.set_user_attr(job.RESULT_ATTR, 0.75)
    log = tmp_path / "train.log"
    log.write_text("epoch 1\nError: Received an invalid value for `model.units`.\n  fix it\n")
    frozen = study.trials[done.number]
    assert workers.process_outcome(0, frozen, log) == (TrialState.COMPLETE, 0.75, None)
    state, _, error = workers.process_outcome(2, frozen, log)
    assert state == TrialState.FAIL and error.startswith("exit code 2: Received an invalid")
    state, _, error = workers.process_outcome(-9, frozen, log)
    assert state == TrialState.FAIL and error.startswith("killed by SIGKILL")
    empty = study.ask()  # a job that exited 0 but left no result
    assert workers.process_outcome(0, study.trials[empty.number], log)[0] == TrialState.FAIL
    pruned = study.ask()
    pruned.set_user_attr(job.PRUNED_ATTR, 1)
    assert workers.process_outcome(0, study.trials[pruned.number], log)[0] == TrialState.PRUNED


def test_a_trial_process_composes_the_sweeps_config():
    from omegaconf import OmegaConf

    hydra_cfg = OmegaConf.create(
        {
            "job": {"config_name": "mine"},
            "runtime": {
                "config_sources": [
                    {"path": "pkg://pipeline.conf", "schema": "pkg", "provider": "main"},
                    {"path": "/my/conf", "schema": "file", "provider": "command-line"},
                ]
            },
            "overrides": {
                "hydra": ["hydra.sweeper.n_workers=2", "hydra/launcher=basic", "hydra.verbose=true"]
            },
        }
    )
    assert runner.job_command(hydra_cfg) == [
        "--config-name", "mine", "--config-dir", "/my/conf", "hydra.verbose=true",
    ]  # fmt: skip


def bad_settings(*extra: str):
    return run_cli("-m", *TINY, *extra, "hydra.sweeper.n_trials=1")


@pytest.mark.parametrize(
    "extra, named",
    [
        (["hydra.sweeper.n_workers=0"], "hydra.sweeper.n_workers"),
        # A sweep process each (5 s): one in the fast tier.
        pytest.param(["hydra.sweeper.n_jobs=2"], "hydra.sweeper.n_jobs", marks=pytest.mark.slow),
        pytest.param(
            ["hydra.sweeper.gpus_per_trial=-1"],
            "hydra.sweeper.gpus_per_trial",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_worker_settings_are_named(store, tmp_path, extra, named):
    result = bad_settings(*extra)
    assert result.returncode != 0
    assert named in result.stderr
    assert runs_in(store) == []


# --- sweeps with two workers ----------------------------------------------------------------------


def trials_of(store: str) -> list[optuna.trial.FrozenTrial]:
    st = sweep_storage.open_storage(sweep_storage.default_storage(store))
    [summary] = optuna.get_all_study_summaries(st)
    return optuna.load_study(study_name=summary.study_name, storage=st).trials


def start_sweep(tmp_path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.train", "-m", *TINY, *extra],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def trial_processes(
    sweeper: subprocess.Popen, count: int, timeout: float = 120, forked: bool = False
) -> list:
    """Wait until the sweeper runs `count` trial processes that have begun training (`forked`:
    with `hydra.sweeper.preload=true`, the children of its fork server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(sweeper.pid).children(recursive=forked)
        if forked:  # not the fork server itself, nor multiprocessing's resource tracker
            children = [
                c
                for c in children
                if c.ppid() != sweeper.pid and "resource_tracker" not in " ".join(c.cmdline())
            ]
        if len(children) >= count:
            return children
        assert sweeper.poll() is None, sweeper.communicate()[1][-3000:]
        time.sleep(0.2)
    raise AssertionError(f"the sweeper did not start {count} trial processes")


@pytest.mark.slow
@pytest.mark.parametrize("preload", ["false", "true"])  # a fresh interpreter, or forked
def test_two_workers_run_exactly_n_trials_under_one_parent(store, tmp_path, preload):
    sweeper = start_sweep(tmp_path, "hydra.sweeper.n_trials=3", f"hydra.sweeper.preload={preload}")
    out, err = sweeper.communicate(timeout=600)
    assert sweeper.returncode == 0, err[-3000:]
    trials = trials_of(store)
    assert sorted(t.number for t in trials) == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    runs = runs_in(store)
    [parent] = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.data.tags["trial_number"] for c in children) == ["0", "1", "2"]
    assert {c.data.tags["trial_worker"] for c in children} == {"0", "1"}
    assert all(c.data.tags["trial_devices"].startswith(("CPU", "GPU")) for c in children)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(c.data.tags["trial_state"] == "COMPLETE" for c in children)
    assert "[sweep] trial 2 on worker" in out
    # Each trial's output went to its own log, beside its Hydra files.
    assert len(list(tmp_path.glob("multirun/*/*/*/train.log"))) == 3


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True])
def test_a_trial_killed_with_sigkill_fails_and_is_retried(store, tmp_path, preload):
    overrides = ("hydra.sweeper.n_trials=2", "trainer.epochs=3")
    sweeper = start_sweep(tmp_path, *overrides, f"hydra.sweeper.preload={str(preload).lower()}")
    victim = trial_processes(sweeper, 1, forked=preload)[0]
    time.sleep(3)  # into its start-up or training
    victim.kill()
    out, err = sweeper.communicate(timeout=600)
    assert sweeper.returncode == 0, err[-3000:]
    trials = trials_of(store)
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == 1 and "killed by SIGKILL" in killed[0].user_attrs["error"]
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed[0].params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert not [r for r in runs_in(store) if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_leaves_nothing_running(store, tmp_path):
    sweeper = start_sweep(tmp_path, "hydra.sweeper.n_trials=4", "trainer.epochs=50")
    children = trial_processes(sweeper, 2)
    time.sleep(5)
    sweeper.send_signal(signal.SIGINT)
    sweeper.communicate(timeout=120)
    assert sweeper.returncode != 0
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    trials = trials_of(store)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    runs = runs_in(store)
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
    [parent] = [r for r in runs if r.data.tags.get("sweep") == "parent"]
    assert parent.info.status == "KILLED"
