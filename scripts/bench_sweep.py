"""Does pruning pay? The same Optuna search on MNIST-1D with and without a pruner.

Both sweeps use the `rnn` search space, the same sampler and seed and the same number of trials,
each in a fresh throwaway MLflow store and journal. The default sampler is `random`: it proposes
the same trials to both sweeps whatever the pruner does, so the comparison measures pruning alone
(TPE learns from pruned trials, and its two sweeps soon try different models). The default pruner
is successive halving with min_resource=1 and reduction_factor=3. Trials run without XLA
(`trainer.jit_compile=false`), as in the measurements in the README. With two or more CPU cores
the sweeps run at the same time, each limited to one TensorFlow thread (so neither speeds up when
the other finishes) and scheduled by the OS over all cores, so that load from elsewhere on a
shared machine falls on both alike; with one core they run one after the other. Prints both wall times, both best
validation accuracies, and the wall-time ratio (pruned / unpruned) as its last line. The target: a
ratio of 0.6 or less with the best accuracy within 0.5 points.

    python scripts/bench_sweep.py                       # the full benchmark (about an hour on 2 cores)
    python scripts/bench_sweep.py --n-trials 6 --epochs 6 --units-max 32   # a few minutes
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
    p.add_argument(
        "--units-max", type=int, default=64, help="upper bound of model.units (log scale from 16)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampler seed shared by both sweeps")
    p.add_argument("--sampler", default="random", help="hydra/sweeper/sampler of both sweeps")
    p.add_argument("--jit", action="store_true", help="let trials use XLA (compiled per trial)")
    p.add_argument(
        "--pruner", default="successive_halving", help="hydra/sweeper/pruner of the pruned sweep"
    )
    p.add_argument(
        "--pruner-arg",
        action="append",
        metavar="KEY=VALUE",
        help="argument of the pruner (repeatable), e.g. n_warmup_steps=3; default for "
        "successive_halving: min_resource=1 reduction_factor=3, else the pruner's defaults",
    )
    p.add_argument(
        "--sequential", action="store_true", help="run the two sweeps one after the other"
    )
    args = p.parse_args(argv)
    if args.pruner_arg is None:  # the setting measured in the README
        defaults = {"successive_halving": ["min_resource=1", "reduction_factor=3"]}
        args.pruner_arg = defaults.get(args.pruner, [])
    return args


def sweep_command(args: argparse.Namespace, pruner: str, workdir: Path) -> list[str]:
    overrides = [
        "hparams_search=rnn",
        "data=mnist1d",
        f"trainer.epochs={args.epochs}",
        "tracking.log_model=false",
        "trainer.verbose=0",
        f"model.units=tag(log,int(interval(16,{args.units_max})))",
        f"hydra.sweeper.n_trials={args.n_trials}",
        f"hydra/sweeper/sampler={args.sampler}",
        f"hydra.sweeper.sampler.seed={args.seed}",
        f"trainer.jit_compile={'null' if args.jit else 'false'}",
        f"hydra.sweeper.storage={workdir / 'journal.log'}",
        "hydra.sweeper.study_name=bench",
        f"hydra/sweeper/pruner={pruner}",
    ]
    if pruner != "none":
        overrides += [f"hydra.sweeper.pruner.{arg}" for arg in args.pruner_arg]
    return [sys.executable, "-m", "pipeline.train", "-m", *overrides]


def start_sweep(args: argparse.Namespace, pruner: str, workdir: Path, one_thread: bool) -> dict:
    """Launch one sweep in its own store; its output goes to sweep.log."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
    }
    if one_thread:  # read by TensorFlow's thread pools and by oneDNN/OpenMP
        env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1")
    log = open(workdir / "sweep.log", "w")
    process = subprocess.Popen(
        sweep_command(args, pruner, workdir),
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return {
        "pruner": pruner,
        "workdir": workdir,
        "process": process,
        "log": log,
        "started": time.perf_counter(),
    }


def load_study(workdir: Path):
    """The sweep's study, read from its journal; None before the sweep has created it."""
    import optuna

    from pipeline.sweeps.storage import open_storage

    journal = workdir / "journal.log"
    if not journal.exists():
        return None
    try:
        return optuna.load_study(study_name="bench", storage=open_storage(str(journal)))
    except KeyError:  # the journal exists, the study not yet
        return None


def finished_trials(workdir: Path) -> int:
    """Trials the sweep has finished so far."""
    study = load_study(workdir)
    return 0 if study is None else sum(t.state.is_finished() for t in study.trials)


def summarize(sweep: dict) -> dict:
    """Wall time, best accuracy and trial counts of a finished sweep."""
    sweep["log"].close()
    if sweep["process"].returncode != 0:
        tail = (sweep["workdir"] / "sweep.log").read_text()[-3000:]
        sys.exit(f"The sweep with pruner {sweep['pruner']} failed:\n{tail}")
    study = load_study(sweep["workdir"])
    states = [t.state.name for t in study.trials]
    return {
        "wall": sweep["wall"],
        "best": study.best_value,
        "complete": states.count("COMPLETE"),
        "pruned": states.count("PRUNED"),
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
    }


def run_all(args: argparse.Namespace, pruners: list[str], tmp: Path) -> list[dict]:
    """Run the sweeps side by side or in turn; print progress every half minute."""
    together = not args.sequential and (os.cpu_count() or 1) >= len(pruners)
    batches = [pruners] if together else [[p] for p in pruners]
    done = []
    for batch in batches:
        running = []
        for pruner in batch:
            workdir = tmp / pruner
            workdir.mkdir()
            running.append(start_sweep(args, pruner, workdir, one_thread=together))
        last_report = time.perf_counter()
        while any(s["process"].poll() is None for s in running):
            time.sleep(1)
            for s in running:
                if s["process"].poll() is not None and "wall" not in s:
                    s["wall"] = time.perf_counter() - s["started"]
            if time.perf_counter() - last_report >= 30:
                last_report = time.perf_counter()
                counts = ", ".join(
                    f"{s['pruner']}: {finished_trials(s['workdir'])}/{args.n_trials}"
                    for s in running
                )
                print(f"  trials finished: {counts}", flush=True)
        for s in running:
            s.setdefault("wall", time.perf_counter() - s["started"])
        done += running
    return [summarize(s) for s in done]


def main(argv=None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    pruner_args = " ".join(args.pruner_arg) or "defaults"
    print(
        f"MNIST-1D, rnn search, {args.n_trials} trials x up to {args.epochs} epochs, "
        f"units 16..{args.units_max}, {args.sampler} sampler seed {args.seed}; "
        f"pruner {args.pruner} ({pruner_args})",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        base, pruned = run_all(args, ["none", args.pruner], Path(tmp))
    for label, r in zip(("no pruning", args.pruner), (base, pruned), strict=True):
        print(
            f"{label:<20} wall {r['wall']:7.1f} s   best val_accuracy {r['best']:.4f}   "
            f"{r['complete']} complete, {r['pruned']} pruned, {r['epochs']} epochs trained"
        )
    gap = 100 * (base["best"] - pruned["best"])
    print(f"best accuracy: pruned sweep {gap:+.2f} points below the unpruned one")
    print(f"wall-time ratio (pruned / unpruned): {pruned['wall'] / base['wall']:.3f}", flush=True)


if __name__ == "__main__":
    main()
