"""`hydra.sweeper.preload=true`: each trial is still a process of its own, forked from a server
process that imported TensorFlow, Keras, MLflow and Optuna once (multiprocessing's forkserver),
instead of a fresh `python -m pipeline.train` that imports them again.

Why: a fresh interpreter spends about 7 CPU-s on those imports before every trial, while a sweep
in one process pays them once; on 2 cores with trials of 20 s two preloaded workers were 1.21-1.36x
as fast as one where plain ones were 1.01-1.04x (docs/performance.md#sweep-workers). Only imports are shared: the
server runs no TensorFlow op, so every trial starts TensorFlow (and, on a GPU, CUDA) itself, and a
crash or a kill still ends that trial alone. Off by default: on GPU trials of minutes the 7 s do
not matter, and CUDA after a fork is not checked on a GPU yet.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

# What every trial imports before it trains; the server imports them once.
PRELOAD = ["tensorflow", "keras", "mlflow", "optuna", "sklearn.metrics", "pipeline.cli.train"]


@functools.cache
def _forkserver():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def _trial_main(argv: list[str], env: dict[str, str], log_path: str) -> None:
    """In the forked trial process: what `python -m pipeline.train *argv` would do, with its
    environment, its own session (Ctrl-C reaches the sweeper only) and its output in the log."""
    os.setsid()
    os.environ.clear()
    os.environ.update(env)  # read by TensorFlow when it starts, after this
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["pipeline.train", *argv]  # run_module puts the module's path first
    runpy.run_module("pipeline.train", run_name="__main__", alter_sys=True)


class ForkedTrial:
    """A forked trial process with the part of `subprocess.Popen`'s interface the workers use."""

    def __init__(self, process):
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode  # negative: the signal that ended it, as Popen's

    def poll(self) -> int | None:
        return self.process.exitcode

    def send_signal(self, sig: int) -> None:
        if self.process.exitcode is None:
            os.kill(self.process.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(f"trial process {self.pid}", timeout)
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()


def start(argv: list[str], env: dict[str, str], log_path: Path) -> ForkedTrial:
    """Fork a trial process from the preloaded server (started on the first call)."""
    process = _forkserver().Process(
        target=_trial_main, args=(argv, env, str(log_path)), name="trial", daemon=False
    )
    process.start()
    return ForkedTrial(process)
