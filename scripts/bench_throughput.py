"""Training throughput: the seed tutorials' plain `model.fit(numpy)` against the pipeline's
training stage, side by side in one process, alternating repeats, medians reported. Each fit
first runs one untimed warm-up epoch (tracing, and XLA compilation for (b)), then the timed
epochs: steady-state samples/s, the median over every timed epoch of every repeat. Epochs, not
whole fits, because this shared machine now and then runs one epoch at half speed (it loses a
core for a few seconds: seen as 4,038, 3,898, 3,622, 3,521 samples/s, then 2,006 within one fit),
which one slow epoch in a two-epoch fit would otherwise decide.

    python scripts/bench_throughput.py                 # everything, 7-25 min on 2 CPU cores, by the CPU
    python scripts/bench_throughput.py --quick         # fewer samples/repeats, ~9 min

Batch sizes: the rows at 32 (Keras' default batch size, and the one seed tutorial 000 passes to
`model.fit`) and at 128 (seed tutorial 004's, as in `experiment=mnist_rows_lstm`); MNIST-1D at 64 (the
pipeline's `data=mnist1d` default). `--batch-size` sets one for every workload.

Whether the pipeline changes what is learned is checked apart from the timing: one more pair of
fits per workload with the same seed and the samples in the same order on both sides (shuffling off
in both), whose validation accuracies must agree epoch by epoch. With shuffling on, as in the timed
fits, (a) and (b) see different orders (Keras' array adapter against tf.data), and that order alone
moves the accuracy after a few epochs by a point or more; those accuracies are printed with their
range over seeds.

Prints, per workload, samples/s and final validation accuracy of (a) and (b); the achieved
LSTM training FLOP/s against a large matmul's; the startup overhead of
`python -m pipeline.train trainer=smoke` over a bare script doing the same fit; the peak RSS
of a default training run; and, as the last line, each workload's (b)/(a) ratio and the worst.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline.config.schema import EVAL_BATCH_FACTOR  # noqa: E402
from pipeline.data import DataSpec, to_tf_dataset  # noqa: E402


def composed(*overrides: str):
    """The validated config `python -m pipeline.train OVERRIDES` would run with: every value
    from the YAML, as the pipeline's own runs get them."""
    from hydra import compose, initialize_config_dir

    from pipeline.config import CONF_DIR, register_configs, validate

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return validate(compose("config", overrides=list(overrides)))


def as_overrides(group: str, fields: dict) -> list[str]:
    """{"jit_compile": False} -> ["trainer.jit_compile=false"]."""
    text = {None: "null", True: "true", False: "false"}
    return [
        f"{group}.{k}={text[v] if v is None or isinstance(v, bool) else v}"
        for k, v in fields.items()
    ]


def rows_of_digits(n: int, seed: int = 0):
    """MNIST-shaped data offline: sklearn's 8x8 digits scaled to 24x24, padded to 28x28,
    randomly shifted by up to 2 pixels with a little noise. 28 steps x 28 features, 10 classes."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(digits.images), n)
    big = np.kron(digits.images[idx] / 16.0, np.ones((3, 3)))  # (n, 24, 24)
    out = np.zeros((n, 28, 28), np.float32)
    shifts = rng.integers(0, 5, size=(n, 2))
    for i, (dy, dx) in enumerate(shifts):
        out[i, dy : dy + 24, dx : dx + 24] = big[i]
    out += rng.normal(0, 0.1, out.shape).astype(np.float32)
    return out, digits.target[idx].astype(np.int32)


def workload_arrays(name: str, n_rows: int):
    if name == "rows":
        x, y = rows_of_digits(n_rows + n_rows // 10)
        cut = n_rows
        return (x[:cut], y[:cut]), (x[cut:], y[cut:]), DataSpec((28, 28), "classification", 10)
    from pipeline.data import mnist1d

    data = mnist1d.load(composed("data=mnist1d").data, seed=0)
    return data.arrays["train"], data.arrays["val"], data.spec


def make_model(cell: str, spec: DataSpec, seed: int):
    import keras

    from pipeline.models import build_model

    keras.utils.set_random_seed(seed)
    return build_model(composed(f"model={cell}", "model.units=128").model, spec)


def epoch_timer():
    """A Keras callback listing each epoch's seconds (validation included) in `.seconds`."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        seconds: list

        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    return EpochTimer()


def warm_then_time(model, epochs: int, **fit_args) -> tuple[list[float], list[float]]:
    """One untimed warm-up epoch, then `epochs` timed ones: (seconds of each timed epoch,
    validation accuracy after each of the `epochs + 1` epochs)."""
    warm = model.fit(epochs=1, verbose=0, **fit_args)
    timer = epoch_timer()
    hist = model.fit(initial_epoch=1, epochs=epochs + 1, verbose=0, callbacks=[timer], **fit_args)
    return timer.seconds, warm.history["val_accuracy"] + hist.history["val_accuracy"]


KERAS_DEFAULT_BATCH = 32  # model.fit's batch_size when none is given; seed 000 passes it too


def configured_batch(workload: str) -> int:
    """The batch size the project's configs give the workload: the rows tutorial's preset, or
    MNIST-1D's data default."""
    from omegaconf import OmegaConf

    if workload == "rows":
        return OmegaConf.load(
            ROOT / "pipeline/conf/experiment/mnist_rows_lstm.yaml"
        ).data.batch_size
    return OmegaConf.load(ROOT / "pipeline/conf/data/mnist1d.yaml").batch_size


def fit_plain(cell, spec, train, val, batch, epochs, seed, shuffle=True):
    """(a) The tutorials' way: numpy arrays into fit() with Keras' defaults (`shuffle=False` only
    for the same-order check)."""
    import keras

    model = make_model(cell, spec, seed)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return warm_then_time(
        model,
        epochs,
        x=train[0],
        y=train[1],
        batch_size=batch,
        validation_data=val,
        shuffle=shuffle,
    )


def fit_pipeline(cell, spec, train, val, batch, epochs, seed, shuffle=True, **trainer):
    """(b) The pipeline's training stage with its default trainer config (or `trainer` overrides);
    `shuffle=False` only for the same-order check."""
    from pipeline.training.compile import compile_model

    model = make_model(cell, spec, seed)
    settings = composed(*as_overrides("trainer", trainer)).trainer
    compile_model(model, settings, spec, learning_rate=1e-3, clipnorm=None)  # (a): Adam's default
    train_ds = to_tf_dataset(*train, batch, shuffle=shuffle, seed=seed, cache=True)
    # Validation in the data stage's default eval batches (data.eval_batch_size: null).
    val_ds = to_tf_dataset(*val, EVAL_BATCH_FACTOR * batch, shuffle=False, seed=seed, cache=True)
    # shuffle=False: the training pipeline reshuffles every epoch itself.
    return warm_then_time(model, epochs, x=train_ds, validation_data=val_ds, shuffle=False)


def compare(name, cell, n_rows, batch, epochs, repeats):
    train, val, spec = workload_arrays(name, n_rows)
    n = len(train[0])
    results = {"a": [], "b": []}  # per repeat: (samples/s of each timed epoch, final accuracy)
    for r in range(repeats):
        order = ("a", "b") if r % 2 == 0 else ("b", "a")  # alternate who goes first
        for way in order:
            fit = fit_plain if way == "a" else fit_pipeline
            seconds, accs = fit(cell, spec, train, val, batch, epochs, seed=r)
            results[way].append(([n / s for s in seconds], accs[-1]))
    med = {
        w: (
            statistics.median(rate for rates, _ in v for rate in rates),
            statistics.median(a for _, a in v),
        )
        for w, v in results.items()
    }
    print(
        f"\n[{name}] {cell.upper()} 128 units, {len(train[0])} train samples, batch {batch}, "
        f"1 warm-up + {epochs} timed epochs, {repeats} alternating repeats (medians over the "
        f"{epochs * repeats} timed epochs of each side)"
    )
    for way, label in (
        ("a", "numpy + model.fit, Keras defaults"),
        ("b", "pipeline training stage"),
    ):
        accs = [a for _, a in results[way]]  # their spread: how much a seed alone moves it
        print(
            f"  ({way}) {label:34s}: {med[way][0]:8.0f} samples/s   val_accuracy "
            f"{med[way][1]:.4f} (seeds: {min(accs):.4f} to {max(accs):.4f})"
        )
    ratio = med["b"][0] / med["a"][0]
    print(f"  ratio (b)/(a): {ratio:.2f}x")
    same_order(cell, spec, train, val, batch, epochs)
    return ratio


def same_order(cell, spec, train, val, batch, epochs) -> None:
    """(a) and (b) from the same seed with the samples in the same order: the pipeline's
    defaults (XLA, steps_per_execution, batch splits, tf.data) must leave each epoch's accuracy
    as (a)'s."""
    _, a = fit_plain(cell, spec, train, val, batch, epochs, seed=0, shuffle=False)
    _, b = fit_pipeline(cell, spec, train, val, batch, epochs, seed=0, shuffle=False)
    worst = max(abs(x - y) for x, y in zip(a, b, strict=True))

    def each(accs):
        return " ".join(f"{x:.4f}" for x in accs)

    print(
        f"  same seed, same sample order, {len(a)} epochs: final val_accuracy (a) {a[-1]:.4f}, "
        f"(b) {b[-1]:.4f}, {100 * abs(a[-1] - b[-1]):.2f} points apart; largest per-epoch "
        f"difference {100 * worst:.2f} points (by epoch: a {each(a)}; b {each(b)})"
    )


def matmul_flops(size: int = 2048, reps: int = 10) -> float:
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    tf.linalg.matmul(a, b).numpy()
    start = time.perf_counter()
    for _ in range(reps):
        c = tf.linalg.matmul(a, b)
    c.numpy()
    return 2 * size**3 * reps / (time.perf_counter() - start)


def flops_fraction(batch: int, n_rows: int, repeats: int) -> None:
    """Achieved LSTM training FLOP/s (3x forward, forward 8*h*(h+d) per step) vs a matmul, with
    the training stage's defaults (XLA, batch splits) at a batch size whose steps fill both cores."""
    train, val, spec = workload_arrays("rows", n_rows)
    h, d, steps = 128, 28, 28
    per_sample = 3 * 8 * h * (h + d) * steps
    achieved, ceiling = [], []
    for r in range(repeats):
        ceiling.append(matmul_flops())
        seconds, _ = fit_pipeline("lstm", spec, train, val, batch, 1, seed=r)
        achieved.append(len(train[0]) * per_sample / sum(seconds))
    a, c = statistics.median(achieved), statistics.median(ceiling)
    print(f"\n[FLOP/s] LSTM 128 on 28x28 rows, batch {batch}, pipeline defaults, {repeats} repeats")
    print(
        f"  training {a / 1e9:.1f} GFLOP/s vs 2048x2048 matmul {c / 1e9:.1f} GFLOP/s: "
        f"{100 * a / c:.0f}% of the ceiling"
    )


BARE = textwrap.dedent("""
    import keras
    from hydra import compose, initialize_config_dir
    from pipeline.config import CONF_DIR, register_configs, validate
    from pipeline.data import make_datasets
    from pipeline.models import build_model
    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        conf = validate(compose("config"))
    data = make_datasets(conf.data, seed=42)
    model = build_model(conf.model, data.spec)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    model.fit(data.train.take(3), validation_data=data.val.take(2), epochs=1, verbose=2)
    print(model.evaluate(data.test.take(2), verbose=0))
""")


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True)
    return time.perf_counter() - start


def startup(repeats: int) -> None:

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "PYTHONPATH": str(ROOT),
        }
        cli = [sys.executable, "-m", "pipeline.train", "trainer=smoke", f"hydra.run.dir={tmp}/out"]
        # The same data and model as the CLI's default (the default config's).
        bare = [sys.executable, "-c", BARE]
        timed(cli, env)  # creates the store's tables once, as any second run finds them
        pairs = [(timed(cli, env), timed(bare, env)) for _ in range(repeats)]
    p, b = statistics.median(p for p, _ in pairs), statistics.median(b for _, b in pairs)
    # The median of each pair's difference: a pair runs back to back, so a slow minute on this
    # shared machine slows both of its commands, where it would skew one side's median alone.
    diffs = sorted(cli_s - bare_s for cli_s, bare_s in pairs)
    print(
        f"\n[startup] python -m pipeline.train trainer=smoke {p:.1f} s vs bare TF script {b:.1f} s "
        f"(medians of {repeats}): overhead {statistics.median(diffs):+.1f} s, the median of the "
        f"pairs' differences ({', '.join(f'{d:+.1f}' for d in diffs)})"
    )


def peak_memory(epochs: int) -> None:
    """Peak RSS of a default run, from the kernel (wait4): MLflow included, in the same process."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "PYTHONPATH": str(ROOT),
        }
        cmd = [
            sys.executable,
            "-m",
            "pipeline.train",
            f"trainer.epochs={epochs}",
            f"hydra.run.dir={tmp}/out",
        ]
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        proc.wait()
        # Its peak is in RUSAGE_CHILDREN, with the earlier, smaller runs.
        largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        if proc.returncode:
            raise SystemExit(f"the default run failed (exit code {proc.returncode})")
    print(
        f"\n[memory] default training run (model=lstm, data=mnist1d, {epochs} epochs): "
        f"peak RSS {largest / 2**20:,.0f} MiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="smaller workloads and fewer repeats")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--rows-samples", type=int, default=20000, help="rows-of-MNIST training samples"
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="one batch size for every workload (default: rows at 32, Keras' default, and at "
        "128, tutorial 004's; MNIST-1D at 64, the pipeline's data=mnist1d default)",
    )
    ap.add_argument("--flops-batch-size", type=int, default=256)
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.rows_samples = 2, 6000
    print(f"machine: {os.cpu_count()} CPU cores; TensorFlow threads as configured by default")
    rows_batches = (
        [args.batch_size] if args.batch_size else [KERAS_DEFAULT_BATCH, configured_batch("rows")]
    )
    ratios = {
        f"rows batch {batch}": compare("rows", "lstm", args.rows_samples, batch, 2, args.repeats)
        for batch in rows_batches
    }
    batch = args.batch_size or configured_batch("mnist1d")
    ratios[f"mnist1d batch {batch}"] = compare("mnist1d", "gru", 0, batch, 5, args.repeats)
    flops_fraction(args.flops_batch_size, args.rows_samples, args.repeats)
    startup(max(args.repeats, 5))  # its pairs differ by a second or more on this machine
    peak_memory(3 if args.quick else 50)
    each = ", ".join(f"{name} {r:.2f}x" for name, r in ratios.items())
    print(f"\nthroughput ratio (b)/(a): {each}; worst {min(ratios.values()):.2f}x")


if __name__ == "__main__":
    main()
