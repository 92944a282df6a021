"""Does batching labelled sequences by length (`data.bucket_by_length`) pay? The same small LSTM
trained on the same sequences with one global length (a) and bucketed by length (b), side by
side in one process, through the pipeline's own data, model and compile stages (XLA on CPUs,
`trainer.batch_splits`: what a run gets).

    python scripts/bench_bucketing.py                  # both workloads, 1-2 min on 2 CPU cores
    python scripts/bench_bucketing.py --epochs 3 --max-buckets 8
    python scripts/bench_bucketing.py trainer.jit_compile=false   # overrides for both arms

Workloads: aeon's shipped JapaneseVowels (`data=uea`, lengths 7-29, 216 training sequences at
batch 16) and a synthetic long-tailed table (`data=sequences`, lengths lognormal around 60 steps,
clipped to 20-400, 2,000 sequences, batch 32) written to a temporary Parquet file.

Each arm first runs one warm-up epoch (tracing, and an XLA compilation per batch shape: a
bucketed epoch has up to two shapes per bucket, a global one two), timed on its own; then the
arms alternate timed epochs and the medians are reported as sequences/s and steps/s. The run
pays for bucketing after `break-even` epochs: its extra warm-up over its saving per epoch
(evaluation compiles its own shapes too, not counted here).

Also prints the padding share each way (the run's tags `data.padding_share`, over all splits, and
`data.padding_share_bucketed`, the training batches), the distinct training batch shapes over
the timed epochs with each batch padded to its bucket's bound (the pipeline's rule) and to its
own longest member (each shape an XLA compilation), and, as the last line, (b)/(a) per workload.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

MODEL = ("model=lstm", "model.units=32")  # the same small LSTM for every workload


def composed(*overrides: str):
    """The validated config `python -m pipeline.train OVERRIDES` would run with."""
    from hydra import compose, initialize_config_dir

    from pipeline.config import CONF_DIR, register_configs, validate

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return validate(compose("config", overrides=list(overrides)))


def long_tailed_table(path: Path, n: int = 2000, seed: int = 0) -> Path:
    """n two-channel sequences, lengths lognormal (median 60, sigma 0.7) clipped to 20-400, in
    long format; the class (3) is the frequency of a noisy sine, so the length tells nothing."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(60), 0.7, n)), 20, 400).astype(int)
    labels = np.arange(n) % 3
    ids = np.repeat(np.arange(n), lengths)
    t = np.concatenate([np.arange(k) for k in lengths])
    freq = (0.05 + 0.05 * labels)[ids]
    frame = pd.DataFrame(
        {
            "id": ids,
            "t": t,
            "a": np.sin(2 * np.pi * freq * t) + rng.normal(0, 0.3, len(t)),
            "b": rng.normal(0, 1, len(t)),
            "label": labels[ids],
        }
    )
    frame.to_parquet(path)
    return path


def batch_shapes(data, bucketed: bool, epochs: int) -> tuple[int, int]:
    """Distinct training batch shapes over `epochs` epochs (each an XLA compilation): as built,
    and (bucketed) with each batch cut back to its longest member instead of its bucket's bound,
    which keeps finding new shapes epoch after epoch."""
    from pipeline.data.labelled import PAD_VALUE

    built, longest = set(), set()
    for _ in range(epochs):
        for x, _ in data.train:
            x = np.asarray(x)
            built.add(x.shape)
            steps = int((~(x == PAD_VALUE).all(axis=-1)).sum(axis=1).max())
            longest.add((x.shape[0], steps) if bucketed else x.shape)
    return len(built), len(longest)


def input_seconds(data, epochs: int = 5) -> float:
    """Median seconds of one pass over the training pipeline alone, no model."""
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        for _ in data.train:
            pass
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def arm(overrides: tuple[str, ...], bucketed: bool):
    """(data, compiled model, warm-up seconds) for one arm."""
    import keras

    from pipeline.data import make_datasets
    from pipeline.models import build_model
    from pipeline.training.compile import compile_model, optimizer_settings

    conf = composed(*overrides, *MODEL, f"data.bucket_by_length={str(bucketed).lower()}")
    data = make_datasets(conf.data, conf.seed)
    keras.utils.set_random_seed(0)
    model = build_model(conf.model, data.spec)
    compile_model(model, conf.trainer, data.spec, *optimizer_settings(conf))
    started = time.perf_counter()
    model.fit(data.train, epochs=1, verbose=0, shuffle=False)
    return data, model, time.perf_counter() - started


def workload(name: str, overrides: tuple[str, ...], epochs: int) -> float:
    """Print one workload's figures; returns (b)/(a) in sequences/s."""
    arms = {"(a) one length": arm(overrides, False), "(b) bucketed": arm(overrides, True)}
    sequences = arms["(a) one length"][0].sizes["train"]
    seconds = {key: [] for key in arms}
    steps = {key: sum(1 for _ in data.train) for key, (data, _, _) in arms.items()}
    for _ in range(epochs):  # alternating, so a slow spell of this shared machine hits both
        for key, (data, model, _) in arms.items():
            started = time.perf_counter()
            model.fit(data.train, epochs=1, verbose=0, shuffle=False)
            seconds[key].append(time.perf_counter() - started)
    a, b = arms["(a) one length"], arms["(b) bucketed"]
    print(
        f"[{name}] padding share: {a[0].tags['data.padding_share']} with one length "
        f"({a[0].tags['data.padded_length']} steps), {b[0].tags['data.padding_share_bucketed']} "
        f"bucketed (bounds {b[0].tags['data.length_buckets']})"
    )
    built, longest = batch_shapes(b[0], True, epochs)
    print(
        f"[{name}] training batch shapes over {epochs} epochs: {batch_shapes(a[0], False, 1)[0]} "
        f"with one length, {built} bucketed (padded to bucket bounds), {longest} if padded to "
        "each batch's longest"
    )
    alone = {key: input_seconds(data) for key, (data, _, _) in arms.items()}
    print(
        f"[{name}] the training input pipeline alone: "
        + ", ".join(f"{key} {1000 * t:.0f} ms an epoch" for key, t in alone.items())
    )
    rates = {}
    for key, (_, _, warm) in arms.items():
        epoch = statistics.median(seconds[key])
        rates[key] = sequences / epoch
        print(
            f"[{name}] {key}: {rates[key]:,.0f} sequences/s, {steps[key] / epoch:,.1f} steps/s "
            f"({steps[key]} steps an epoch, median of {epochs} epochs: {epoch:.2f} s); "
            f"warm-up epoch {warm:.1f} s"
        )
    saving = statistics.median(seconds["(a) one length"]) - statistics.median(
        seconds["(b) bucketed"]
    )
    extra = b[2] - a[2]
    even = f"{max(extra, 0) / saving:.0f} epochs" if saving > 0 else "never"
    print(f"[{name}] warm-up costs bucketing {extra:+.1f} s; break-even after {even}")
    return rates["(b) bucketed"] / rates["(a) one length"]


def main() -> None:
    import os

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per arm (default 5)")
    parser.add_argument("--max-buckets", type=int, help="override buckets.MAX_BUCKETS")
    parser.add_argument("overrides", nargs="*", help="config overrides for both arms")
    args = parser.parse_args()
    from pipeline.data import buckets

    if args.max_buckets:
        buckets.MAX_BUCKETS = args.max_buckets
    import tensorflow as tf

    print(
        f"[setup] TensorFlow {tf.__version__}, {len(os.sched_getaffinity(0))} CPU cores, "
        f"{MODEL[1]}, at most {buckets.MAX_BUCKETS} buckets, overrides: {args.overrides or 'none'}"
    )
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        table = long_tailed_table(Path(tmp) / "long_tailed.parquet")
        workloads = {
            "JapaneseVowels": ("data=uea", "data.name=JapaneseVowels"),
            "long-tailed": (
                "data=sequences",
                f"data.path={table}",
                "data.id=id",
                "data.label=label",
                "data.order=t",
            ),
        }
        for name, overrides in workloads.items():
            ratios[name] = workload(name, (*overrides, *args.overrides), args.epochs)
    print(
        "(b)/(a) sequences/s, bucketed over one length: "
        + ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
    )


if __name__ == "__main__":
    main()
