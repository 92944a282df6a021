"""Do asynchronous workers pay? The same Optuna search with 1 and with N workers, then what one
trial costs the study's storage and the MLflow store.

Both sweeps run the `rnn` search on MNIST-1D (small models: units 16..UNITS_MAX) with the random
sampler and no pruner, so trial k gets the same parameters in both (the sampler is seeded with
seed + k) and the wall times compare parallelism alone. Every worker gets one TensorFlow thread
(`TF_NUM_INTRAOP_THREADS`, `TF_NUM_INTEROP_THREADS`, `OMP_NUM_THREADS`): the 1-worker sweep runs
its trials in the sweeping process, as `hydra.sweeper.n_workers=1` does; the N-worker sweep starts
each trial as a process of its own. The sweeps run one after the other, each in a throwaway store.
Prints both wall times, both best validation accuracies, and the speed-up as its last line.
Target: at least 1.7x with 2 workers on 2 cores.

`--costs` instead times, in milliseconds, what the workers ask of the stores per trial: claiming a
trial (claim lock, count, ask, first heartbeat), one epoch's report (`trial.report` and
`should_prune`), and one epoch's MLflow metrics (`log_metrics`, synchronous), on a journal file
and a local SQLite MLflow store, or on `--storage URL` and `MLFLOW_TRACKING_URI` if given.

    python scripts/bench_workers.py                      # 12 trials, workers 1 and 2 (~15 min on 2 cores)
    python scripts/bench_workers.py --n-trials 4 --epochs 2   # a few minutes
    python scripts/bench_workers.py --preload            # and 2 workers with hydra.sweeper.preload=true
    python scripts/bench_workers.py --costs              # seconds
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2")
    p.add_argument("--n-trials", type=int, default=12, help="trials per sweep")
    p.add_argument("--epochs", type=int, default=6, help="epochs per trial")
    p.add_argument("--units-max", type=int, default=64, help="upper bound of model.units")
    p.add_argument("--seed", type=int, default=0, help="sampler seed shared by the sweeps")
    p.add_argument(
        "--preload",
        action="store_true",
        help="also run each multi-worker sweep with hydra.sweeper.preload=true",
    )
    p.add_argument("--costs", action="store_true", help="time the per-trial store costs instead")
    p.add_argument("--storage", help="with --costs: an Optuna storage URL (default: a journal)")
    p.add_argument("--repeats", type=int, default=50, help="with --costs: timings per operation")
    args = p.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    if any(w < 1 for w in args.workers):
        p.error("--workers takes positive counts, e.g. 1,2")
    return args


def sweep_command(
    args: argparse.Namespace, workers: int, workdir: Path, preload: bool = False
) -> list[str]:
    overrides = [
        "hparams_search=rnn",
        "data=mnist1d",
        f"trainer.epochs={args.epochs}",
        "trainer.early_stopping_patience=null",
        "tracking.log_model=false",
        "trainer.verbose=0",
        f"model.units=tag(log,int(interval(16,{args.units_max})))",
        f"hydra.sweeper.n_trials={args.n_trials}",
        "hydra/sweeper/sampler=random",
        f"hydra.sweeper.sampler.seed={args.seed}",
        "hydra/sweeper/pruner=none",
        f"hydra.sweeper.n_workers={workers}",
        f"hydra.sweeper.preload={str(preload).lower()}",
        f"hydra.sweeper.storage={workdir / 'journal.log'}",
        "hydra.sweeper.study_name=bench",
    ]
    return [sys.executable, "-m", "pipeline.train", "-m", *overrides]


def run_sweep(args: argparse.Namespace, workers: int, workdir: Path, preload: bool = False) -> dict:
    env = {
        **os.environ,
        **ONE_THREAD,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
    }
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # the sweep and its trial processes
    with open(workdir / "sweep.log", "w") as log:
        process = subprocess.run(
            sweep_command(args, workers, workdir, preload),
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=log,
        )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if process.returncode != 0:
        tail = (workdir / "sweep.log").read_text()[-3000:]
        sys.exit(f"The sweep with {workers} worker(s) failed:\n{tail}")
    import optuna

    from pipeline.sweeps.storage import open_storage

    study = optuna.load_study(
        study_name="bench", storage=open_storage(str(workdir / "journal.log"))
    )
    states = [t.state.name for t in study.trials]
    return {
        "wall": wall,
        "cpu": cpu,
        "best": study.best_value,
        "complete": states.count("COMPLETE"),
    }


# One training as a trial runs it (a one-thread GRU under XLA on MNIST-1D-shaped data), timed
# after its compile; `ceiling` runs one alone, then two at once.
TRAINING = """
import sys, time
import numpy as np, keras
m = keras.Sequential([keras.Input((40, 1)), keras.layers.GRU(64), keras.layers.Dense(10)])
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
m.compile("adam", loss, jit_compile=True)
x, y = np.random.rand(3600, 40, 1).astype("float32"), np.random.randint(0, 10, 3600)
m.fit(x, y, epochs=1, verbose=0, batch_size=64)
start = time.perf_counter()
m.fit(x, y, epochs=24, verbose=0, batch_size=64)
print(time.perf_counter() - start)
"""


def ceiling() -> float:
    """How much more training two one-thread processes get done at once than one alone: what
    any two workers can reach on this machine, the sweeper aside. Below 2 when a one-thread
    TensorFlow process also leans on a second core (its Python thread and its executor thread
    overlap) or the cores share their caches."""
    env = {**os.environ, **ONE_THREAD}

    def start():
        return subprocess.Popen(
            [sys.executable, "-c", TRAINING],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            stderr=subprocess.DEVNULL,
        )

    alone = float(start().communicate()[0].split()[-1])
    pair = [start(), start()]
    together = max(float(p.communicate()[0].split()[-1]) for p in pair)
    return 2 * alone / together


def compare(args: argparse.Namespace) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"MNIST-1D, rnn search, {args.n_trials} trials x {args.epochs} epochs, units "
        f"16..{args.units_max}, random sampler seed {args.seed}, no pruner; {cores} cores; one "
        "TensorFlow thread per worker",
        flush=True,
    )
    if max(args.workers) == 2:
        print(
            f"two trainings at once do {ceiling():.2f}x the work of one (the ceiling)", flush=True
        )
    arms = [(w, False) for w in args.workers]
    arms += [(w, True) for w in args.workers if w > 1 and args.preload]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        for workers, preload in arms:
            workdir = Path(tmp) / f"w{workers}{'-preload' if preload else ''}"
            workdir.mkdir()
            results[workers, preload] = r = run_sweep(args, workers, workdir, preload)
            # CPU seconds over wall seconds: the cores the sweep kept busy. One TensorFlow
            # thread per worker does not hold a worker to one core (XLA compiles, tf.data,
            # MLflow's logging thread): a 1-worker sweep above 1 core caps what 2 can gain.
            # Preloaded trials are the fork server's children, which this process never
            # waits for: their CPU time does not reach RUSAGE_CHILDREN.
            cpu = "n/a" if preload else f"{r['cpu']:.1f} s ({r['cpu'] / r['wall']:.2f} cores busy)"
            print(
                f"{workers} worker(s){', preloaded' if preload else ''}: wall {r['wall']:7.1f} s"
                f"   cpu {cpu}   best val_accuracy {r['best']:.4f}   {r['complete']} complete",
                flush=True,
            )
    first = results[arms[0]]["wall"]
    for (workers, preload), r in list(results.items())[1:]:
        print(
            f"speed-up ({workers} workers{', preloaded' if preload else ''} / {arms[0][0]}): "
            f"{first / r['wall']:.2f}x",
            flush=True,
        )


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def costs(args: argparse.Namespace) -> None:
    import mlflow
    import optuna
    from optuna.distributions import FloatDistribution

    from pipeline.sweeps import storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-costs-") as tmp:
        url = args.storage or str(Path(tmp) / "journal.log")
        tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tmp}/mlflow.db"
        st = storage.open_storage(url, heartbeat_interval=60)
        study = optuna.create_study(storage=st, study_name=f"costs-{os.getpid()}")
        space = {"x": FloatDistribution(0.0, 1.0)}

        def claim():
            with storage.claim_lock(url):
                study.get_trials(deepcopy=False)
                storage.stamp(st, study.ask(space))

        claim_ms = median_ms(claim, args.repeats)
        trial = study.ask(space)
        step = iter(range(10**6))

        def report():
            trial.report(0.5, step=next(step))
            trial.should_prune()

        report_ms = median_ms(report, args.repeats)
        mlflow.set_tracking_uri(tracking)
        mlflow.set_experiment("bench-costs")
        with mlflow.start_run(log_system_metrics=False):
            metrics = {k: 0.5 for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr")}
            log_ms = median_ms(lambda: mlflow.log_metrics(metrics, step=next(step)), args.repeats)
    where = "journal file" if storage.is_journal_file(url) else url.split("://")[0]
    print(f"storage: {where}; MLflow: {tracking.split('://')[0]}; medians of {args.repeats}")
    print(f"claim a trial (lock, count, ask, heartbeat): {claim_ms:8.1f} ms")
    print(f"report one epoch (report, should_prune):    {report_ms:8.1f} ms")
    print(f"log one epoch's metrics to MLflow:          {log_ms:8.1f} ms", flush=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    costs(args) if args.costs else compare(args)


if __name__ == "__main__":
    main()
