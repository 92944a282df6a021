"""Does bucketing texts by length pay? The same LSTM trained on the same reviews with every text
padded to `data.max_length` (a) and bucketed by length (b), side by side in one process, through
the pipeline's own data (`data=text`), model and compile stages (XLA on CPUs: what a run gets).

    python scripts/bench_text.py                      # about 5 minutes on 2 CPU cores
    python scripts/bench_text.py --max-length 200     # keras-io's IMDB length
    python scripts/bench_text.py --seeds 3            # accuracy over three seeds per arm
    python scripts/bench_text.py model.units=64       # overrides for both arms

The reviews are synthetic, written to a temporary CSV, with IMDB's length distribution (words per
review lognormal: median 174, 90% below about 400, clipped to 10-2,500, as the 25,000 IMDB
training reviews are), a Zipf-distributed vocabulary of 2,000 filler words, and sentiment: one
word in twenty is a sentiment word, of the review's class three times in four. IMDB itself needs
a download, which this benchmark must not.

Each arm runs one warm-up epoch (tracing and an XLA compilation per batch shape), then the arms
alternate timed epochs; tokens/s counts the real tokens (not padding) of an epoch over its median
time. After the same number of epochs, each arm's test accuracy is printed: bucketing changes the
batches' make-up, not what is learnt, so the two should agree to about half a point. The last
line is (b)/(a) in tokens per second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from bench_bucketing import composed  # noqa: E402

# Mean pooling over the steps: the sentiment is spread over the whole review, and a model reading
# only the last state learns it slowly and unevenly (test accuracy moved by 4 points between runs
# of the same settings), which would hide whether bucketing changes what is learnt.
MODEL = ("model=lstm", "model.units=32", "model.embedding_dim=32", "model.pooling=mean")


def imdb_like_reviews(path: Path, n: int, seed: int = 0, columns=("text", "label")) -> Path:
    """n labelled synthetic reviews with IMDB's length distribution, as a CSV with the columns
    `columns` (the text, the label: pos or neg)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    filler = np.array([f"w{i}" for i in range(2000)])
    zipf = 1.0 / np.arange(1, len(filler) + 1)
    zipf /= zipf.sum()
    sentiment = {1: [f"good{i}" for i in range(50)], 0: [f"bad{i}" for i in range(50)]}
    lengths = np.clip(np.round(rng.lognormal(np.log(174), 0.65, n)), 10, 2500).astype(int)
    labels = rng.integers(0, 2, n)
    texts = []
    for length, label in zip(lengths, labels, strict=True):
        words = rng.choice(filler, length, p=zipf)
        marked = np.flatnonzero(rng.random(length) < 0.05)
        polarity = np.where(rng.random(len(marked)) < 0.75, label, 1 - label)
        for i, p in zip(marked, polarity, strict=True):
            words[i] = rng.choice(sentiment[int(p)])
        texts.append(" ".join(words))
    frame = pd.DataFrame({columns[0]: texts, columns[1]: np.where(labels == 1, "pos", "neg")})
    frame.to_csv(path, index=False)
    return path


def arm(overrides: tuple[str, ...], bucketed: bool):
    """(data, compiled model, warm-up seconds, real tokens an epoch) for one arm."""
    import keras

    from pipeline.data import make_datasets
    from pipeline.models import build_model
    from pipeline.training.compile import compile_model, optimizer_settings

    conf = composed(*overrides, *MODEL, f"data.bucket_by_length={str(bucketed).lower()}")
    data = make_datasets(conf.data, conf.seed)
    keras.utils.set_random_seed(conf.seed)  # the same initial weights in both arms
    model = build_model(conf.model, data.spec)
    compile_model(model, conf.trainer, data.spec, *optimizer_settings(conf))
    started = time.perf_counter()
    model.fit(data.train, epochs=1, verbose=0, shuffle=False)
    tokens = int((data.arrays["train"][0] != 0).sum())
    return data, model, time.perf_counter() - started, tokens


def compare(overrides: tuple[str, ...], epochs: int, seed: int) -> dict:
    """Both arms trained with `seed` (the split, the shuffling, the initial weights); prints their
    figures and returns {"ratio", "gap", "accuracy": {arm: %}} for the summary."""
    overrides = (*overrides, f"seed={seed}")
    arms = {"(a) one length": arm(overrides, False), "(b) bucketed": arm(overrides, True)}
    seconds = {key: [] for key in arms}
    for _ in range(epochs):  # alternating, so a slow spell of this shared machine hits both
        for key, (data, model, _, _) in arms.items():
            started = time.perf_counter()
            model.fit(data.train, epochs=1, verbose=0, shuffle=False)
            seconds[key].append(time.perf_counter() - started)
    a, b = arms["(a) one length"][0], arms["(b) bucketed"][0]
    print(
        f"[seed {seed}] {a.sizes['train']} training reviews, {a.tags['data.length_median']} "
        f"tokens median, {a.tags['data.length_max']} longest; padding share "
        f"{a.tags['data.padding_share']} at one length ({a.tags['data.padded_length']}), "
        f"{b.tags['data.padding_share_bucketed']} bucketed (bounds {b.tags['data.length_buckets']})"
    )
    rates, accuracies = {}, {}
    for key, (data, model, warm, tokens) in arms.items():
        epoch = statistics.median(seconds[key])
        rates[key] = tokens / epoch
        accuracies[key] = 100 * model.evaluate(data.test, verbose=0, return_dict=True)["accuracy"]
        print(
            f"[seed {seed}] {key}: {rates[key]:,.0f} tokens/s (median of {epochs} epochs: "
            f"{epoch:.2f} s; warm-up epoch {warm:.1f} s); test accuracy after {epochs + 1} "
            f"epochs {accuracies[key]:.2f}%"
        )
    saving = statistics.median(seconds["(a) one length"]) - statistics.median(
        seconds["(b) bucketed"]
    )
    extra = arms["(b) bucketed"][2] - arms["(a) one length"][2]
    even = f"{max(extra, 0) / saving:.1f} epochs" if saving > 0 else "never"
    print(f"[seed {seed}] bucketing costs {extra:+.1f} s more compiling; break-even after {even}")
    return {
        "ratio": rates["(b) bucketed"] / rates["(a) one length"],
        "gap": accuracies["(b) bucketed"] - accuracies["(a) one length"],
        "accuracy": accuracies,
    }


def main() -> None:
    import os

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=8, help="timed epochs per arm (default 8)")
    parser.add_argument("--reviews", type=int, default=8000, help="reviews in all (default 8000)")
    parser.add_argument("--max-length", type=int, default=500, help="data.max_length (500)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1, each both arms (1)")
    parser.add_argument("overrides", nargs="*", help="config overrides for both arms")
    args = parser.parse_args()
    import tensorflow as tf

    print(
        f"[setup] TensorFlow {tf.__version__}, {len(os.sched_getaffinity(0))} CPU cores, "
        f"{' '.join(MODEL[1:])}, {args.reviews} reviews, data.max_length={args.max_length}, "
        f"overrides: {args.overrides or 'none'}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        csv = imdb_like_reviews(Path(tmp) / "reviews.csv", args.reviews)
        overrides = (
            "data=text",
            f"data.path={csv}",
            f"data.max_length={args.max_length}",
            # A large test split (2,400 reviews at the default 8,000): at 85% accuracy, its
            # standard error is 0.7 points (1.0 at 1,200 reviews).
            "data.test_fraction=0.3",
            *args.overrides,
        )
        for seed in range(args.seeds):
            results.append(compare(overrides, args.epochs, seed))
    if args.seeds > 1:
        for key in results[0]["accuracy"]:
            values = [r["accuracy"][key] for r in results]
            print(f"[summary] {key}: test accuracy {statistics.mean(values):.2f}% mean over seeds")
        gaps = ", ".join(f"{r['gap']:+.2f}" for r in results)
        mean_gap = statistics.mean(r["gap"] for r in results)
        print(f"[summary] accuracy gap (b) - (a): {mean_gap:+.2f} points mean ({gaps})")
    else:
        print(f"[summary] accuracy gap (b) - (a): {results[0]['gap']:+.2f} points")
    ratio = statistics.median(r["ratio"] for r in results)
    print(f"bucketed / one length, tokens per second (median over seeds): {ratio:.2f}x")


if __name__ == "__main__":
    main()
