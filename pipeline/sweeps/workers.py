"""Asynchronous workers (`hydra.sweeper.n_workers=N`): N trials at once, the next one claimed as
soon as any ends, each trial a `python -m pipeline.train` process of its own.

Why processes we start ourselves rather than Hydra's launcher: a launcher runs a batch and returns
when the whole batch is done (the barrier hydra issues #2257 and #3091 are about). Why not
`concurrent.futures.ProcessPoolExecutor`: a worker killed by the kernel (out of memory) breaks the
whole pool, and its workers reuse TensorFlow's state between trials. A fresh process per trial
keeps TensorFlow and GPU memory from leaking between trials and confines a crash to its trial.
Optuna's storage is the only coordination: the job finds its trial there, reports every epoch,
and leaves its result as a user attribute; this loop tells Optuna the outcome.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from pipeline.sweeps import job

POLL_S = 0.2  # how often the loop looks for a finished trial (Popen has no "wait for any")
STOP_WAIT_S = 60  # how long an interrupted trial may take to close its run before it is killed


@dataclass(frozen=True)
class Slot:
    """One worker: its index, the GPUs it owns ("" hides every GPU) and its CPU threads."""

    index: int
    gpus: str | None
    threads: int

    def env(self) -> dict[str, str]:
        """Environment for a trial on this slot; a value the user exported is kept."""
        env = dict(os.environ)
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus
        # Read by TensorFlow's two thread pools and by oneDNN's OpenMP.
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
            env.setdefault(name, str(self.threads))
        return env

    def describe(self) -> str:
        if self.gpus:
            return f"GPU {self.gpus}"
        return f"CPU, {self.threads} thread{'s' if self.threads > 1 else ''}"


def visible_gpus() -> list[str]:
    """GPU ids this process may hand out: CUDA_VISIBLE_DEVICES if set, else what NVML counts.

    NVML, not TensorFlow: TensorFlow would take memory on every GPU in the sweeping process.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    from pipeline.tracking.environment import nvml_devices

    return [str(i) for i in range(len(nvml_devices()[1]))]


def plan_slots(n_workers: int, gpus_per_trial: int | None, gpus: list[str], cores: int):
    """The workers' devices: each its own `gpus_per_trial` GPUs (default 1) in turn, sharing
    only when there are more workers than GPUs; CPU threads split evenly between workers."""
    threads = max(1, cores // n_workers)
    per = 1 if gpus_per_trial is None else gpus_per_trial
    slots = []
    for i in range(n_workers):
        if not gpus:
            owned = None  # a CPU machine: nothing to hide or hand out
        elif per == 0:
            owned = ""
        else:
            owned = ",".join(gpus[(i * per + k) % len(gpus)] for k in range(per))
        slots.append(Slot(i, owned, threads))
    return slots


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@dataclass
class TrialProcess:
    trial: optuna.Trial
    slot: Slot
    process: subprocess.Popen  # or a preloaded.ForkedTrial, which answers the same calls
    log_path: Path


def start_trial(
    trial, slot: Slot, argv: list[str], log_path: Path, preload: bool = False
) -> TrialProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if preload:  # hydra.sweeper.preload: forked from a server that has imported TensorFlow
        from pipeline.sweeps import preloaded

        return TrialProcess(trial, slot, preloaded.start(argv, slot.env(), log_path), log_path)
    with log_path.open("wb") as log:
        # Its own session: Ctrl-C reaches only the sweeper, which passes it on once (a second
        # interrupt would stop the trial at once, before its run is closed).
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.train", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=slot.env(),
            start_new_session=True,
        )
    return TrialProcess(trial, slot, process, log_path)


def stop_all(running: list[TrialProcess]) -> None:
    """Interrupt every trial once, give each time to close its MLflow run, then kill it."""
    for tp in running:
        if tp.process.poll() is None:
            tp.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT_S
    for tp in running:
        try:
            tp.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            tp.process.kill()
            tp.process.wait()


def process_outcome(returncode: int, frozen, log_path: Path):
    """(state, value, error) of a finished trial process, from its exit and its trial's attrs."""
    if job.PRUNED_ATTR in frozen.user_attrs:
        return TrialState.PRUNED, None, None
    if returncode == 0:
        value = frozen.user_attrs.get(job.RESULT_ATTR)
        if value is None or not math.isfinite(float(value)):
            return TrialState.FAIL, None, f"the job returned {value!r} for the optimized metric"
        return TrialState.COMPLETE, float(value), None
    if returncode < 0:
        how = f"killed by {signal.Signals(-returncode).name}"
    else:
        how = f"exit code {returncode}"
    return TrialState.FAIL, None, f"{how}: {error_text(log_path)} (log: {log_path})"


def error_text(log_path: Path, lines: int = 5) -> str:
    """The job's `Error:` paragraph if it printed one, else the last lines of its output."""
    try:
        text = log_path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    for i in range(len(text) - 1, -1, -1):
        if text[i].startswith("Error:"):
            return " ".join(text[i:]).removeprefix("Error: ")
    return " | ".join(text[-lines:]) or "no output"


def run_workers(sweep, parent, slots: list[Slot], argv_prefix: list[str], out_dir: Path) -> None:
    """Keep every slot busy until the study holds n_trials; tell Optuna each trial's outcome.

    Ctrl-C or SIGTERM interrupts every trial once (each closes its MLflow run KILLED), marks
    their Optuna trials FAIL so the same command runs them again, and re-raises.
    """
    from pipeline.sweeps import storage
    from pipeline.tracking.runs import signals_as_interrupts

    free, running = list(slots), []
    live: list[optuna.Trial] = []  # what the heartbeat stamps; changes as trials start and end
    with (
        signals_as_interrupts(),
        storage.heartbeat(live, sweep.s.heartbeat_interval, sweep.storage),
    ):
        try:
            while True:
                while free and (claimed := sweep.claim(1)):
                    trial, slot = claimed[0], free.pop(0)
                    argv = [
                        *argv_prefix,
                        *sweep.trial_overrides(trial, parent.run_id),
                        f"sweep.worker={slot.index}",
                        f"hydra.run.dir={out_dir / str(trial.number)}",
                    ]
                    log_path = out_dir / str(trial.number) / "train.log"
                    print(
                        f"[sweep] trial {trial.number} on worker {slot.index} ({slot.describe()}):"
                        f" {' '.join(sweep.space.overrides(trial.params))}",
                        flush=True,
                    )
                    running.append(start_trial(trial, slot, argv, log_path, sweep.s.preload))
                    live.append(trial)
                if not running:
                    return
                time.sleep(POLL_S)
                for tp in [tp for tp in running if tp.process.poll() is not None]:
                    running.remove(tp)
                    live.remove(tp.trial)
                    free.append(tp.slot)
                    free.sort(key=lambda s: s.index)  # a trial's GPU does not depend on timing
                    frozen = sweep.study.trials[tp.trial.number]
                    state, value, error = process_outcome(
                        tp.process.returncode, frozen, tp.log_path
                    )
                    sweep.record(tp.trial, state, value, error, parent)
                    if tp.process.returncode < 0:  # killed (out of memory, preempted): retry
                        storage.retry_killed(sweep.study, tp.trial.number, sweep.s.stale_retries)
        except BaseException:
            stop_all(running)
            for tp in running:  # so a resumed sweep runs them again
                with contextlib.suppress(Exception):  # a trial that ended meanwhile
                    sweep.study.tell(tp.trial, state=TrialState.FAIL)
                    run_id = sweep.study.trials[tp.trial.number].user_attrs.get(job.RUN_ID_ATTR)
                    parent.tag_child(run_id, TrialState.FAIL.name)
                sweep.ran.append(tp.trial.number)
            raise
