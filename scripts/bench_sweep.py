"""Does pruning pay? The same Optuna search on MNIST-1D with and without a pruner.

Both sweeps use the `rnn` search space, the same sampler seed and the same number of trials, one
after the other in this invocation, each in a fresh throwaway MLflow store and journal. Prints
both wall times, both best validation accuracies, and the wall-time ratio (pruned / unpruned) as
its last line. The target: a ratio of 0.6 or less with the best accuracy within 0.5 points.

    python scripts/bench_sweep.py                       # the full benchmark (long on 2 CPU cores)
    python scripts/bench_sweep.py --n-trials 8 --epochs 5 --units-max 32 --startup 3   # minutes
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-trials", type=int, default=20, help="trials per sweep")
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs per trial")
    p.add_argument("--units-max", type=int, default=256, help="upper bound of model.units (log)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed shared by both sweeps")
    p.add_argument("--pruner", default="median", help="pruner of the pruned sweep")
    p.add_argument("--startup", type=int, default=5, help="trials run to the end before pruning")
    p.add_argument("--warmup", type=int, default=2, help="epochs before a trial can be pruned")
    return p.parse_args(argv)


def run_sweep(args: argparse.Namespace, pruner: str, workdir: Path) -> dict:
    """One sweep in its own store; returns wall time, best accuracy and trial counts."""
    import optuna

    from pipeline.sweeps.storage import open_storage

    journal = workdir / "journal.log"
    overrides = [
        "hparams_search=rnn",
        "data=mnist1d",
        f"trainer.epochs={args.epochs}",
        "tracking.log_model=false",
        "trainer.verbose=0",
        f"model.units=tag(log,int(interval(16,{args.units_max})))",
        f"hydra.sweeper.n_trials={args.n_trials}",
        f"hydra.sweeper.sampler.seed={args.seed}",
        f"hydra.sweeper.storage={journal}",
        "hydra.sweeper.study_name=bench",
        f"hydra/sweeper/pruner={pruner}",
    ]
    if pruner == "median":
        overrides += [
            f"hydra.sweeper.pruner.n_startup_trials={args.startup}",
            f"hydra.sweeper.pruner.n_warmup_steps={args.warmup}",
        ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "-m", *overrides],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"The {pruner} sweep failed:\n{result.stderr[-3000:]}")
    study = optuna.load_study(study_name="bench", storage=open_storage(str(journal)))
    states = [t.state.name for t in study.trials]
    return {
        "wall": wall,
        "best": study.best_value,
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    print(
        f"MNIST-1D, rnn search, {args.n_trials} trials x up to {args.epochs} epochs, "
        f"units 16..{args.units_max}, sampler seed {args.seed}",
        flush=True,
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for label, pruner in (("no pruning", "none"), (f"{args.pruner} pruner", args.pruner)):
            workdir = Path(tmp) / pruner
            workdir.mkdir()
            results[label] = run_sweep(args, pruner, workdir)
            r = results[label]
            print(
                f"{label:<16} wall {r['wall']:7.1f} s   best val_accuracy {r['best']:.4f}   "
                f"{r['complete']} complete, {r['pruned']} pruned, {r['epochs']} epochs trained",
                flush=True,
            )
    (base, pruned) = results.values()
    gap = 100 * (base["best"] - pruned["best"])
    print(f"best accuracy: pruned sweep {gap:+.2f} points below the unpruned one")
    print(f"wall-time ratio (pruned / unpruned): {pruned['wall'] / base['wall']:.3f}")


if __name__ == "__main__":
    main()
