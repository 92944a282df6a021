"""What bounds the rows LSTM's batch-128 ratio (issue 5's 1.5x target): how fast one batch's
gradient runs on this CPU, each way, side by side in one process.

    python scripts/bench_lstm_step.py        # about half a minute on 2 CPU cores

Prints
1. GFLOP/s of an XLA-compiled chain of matmuls shaped like the LSTM's recurrent step (B x 128
   times 128 x 512, 84 in a row, as in a 28-step forward and backward pass) for several B, next
   to a 2048x2048 matmul. XLA hands such a matmul to Eigen, which runs it on one core up to 128
   rows and on both from about 136.
2. Samples/s of the gradient alone (forward and backward pass of the rows model: Keras' LSTM 128
   and a Dense head, 28 steps x 28 features) at batch 128: without XLA (the graph `model.fit`
   runs by default), with XLA on the whole batch, as two 64-sample halves in two XLA calls at
   the same time (what `trainer.batch_splits=2` runs), and the halves again with the LSTM on the
   hand-written gradient (`trainer.fused_lstm`, pipeline/fused_lstm.py): the training stage's
   default. Then the fastest over no-XLA. Training also updates weights, evaluates and reads
   data, so a fit's (b)/(a) ratio stays near it.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_throughput  # noqa: E402

STEPS, UNITS, BATCH = 28, 128, 128


def per_second(fn, args, amount: float, reps: int = 20, rounds: int = 7) -> float:
    """Median over `rounds` of `amount * reps / seconds` for `reps` calls of fn(*args)."""
    import tensorflow as tf

    tf.nest.map_structure(lambda t: t.numpy(), fn(*args))  # trace and compile
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            out = fn(*args)
        tf.nest.map_structure(lambda t: t.numpy(), out)
        rates.append(amount * reps / (time.perf_counter() - start))
    return statistics.median(rates)


def matmul_shapes() -> None:
    import tensorflow as tf

    print(f"[matmul] 2048x2048: {bench_throughput.matmul_flops() / 1e9:.0f} GFLOP/s")
    w = tf.random.normal((UNITS, 4 * UNITS)) * 0.01
    links = 3 * STEPS

    @tf.function(jit_compile=True)
    def chain(h, w):
        def link(i, h):  # keeps the next matmul waiting on this one, as the time loop does
            return i + 1, tf.tanh(tf.matmul(h, w)[:, :UNITS])

        return tf.while_loop(lambda i, _: i < links, link, (0, h))[1]

    for rows in (64, 128, 136, 256):
        h = tf.random.normal((rows, UNITS))
        rate = per_second(chain, (h, w), 2 * rows * UNITS * 4 * UNITS * links)
        print(
            f"[matmul] {rows} x {UNITS} times {UNITS} x {4 * UNITS} under XLA: {rate / 1e9:.0f} GFLOP/s"
        )


def gradients() -> None:
    import keras
    import tensorflow as tf

    from pipeline.training.cpu.fused_lstm import use_fused_lstm

    train, _, spec = bench_throughput.workload_arrays("rows", BATCH)
    x, y = tf.constant(train[0][:BATCH]), tf.constant(train[1][:BATCH])

    def compiled(fused: bool):
        """The gradient function, compiled without and with XLA, and XLA's on two halves."""
        model = bench_throughput.make_model("lstm", spec, seed=0)
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        if fused:
            use_fused_lstm(model)

        def gradient(x, y):
            with tf.GradientTape() as tape:
                loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True), training=True)
            return tape.gradient(loss, model.trainable_variables)

        xla = tf.function(gradient, jit_compile=True)

        @tf.function
        def halves(x, y):  # neither call waits on the other, so TensorFlow runs them together
            half = BATCH // 2
            return xla(x[:half], y[:half]), xla(x[half:], y[half:])

        return tf.function(gradient), xla, halves

    graph, xla, halves = compiled(fused=False)
    plain = "no XLA, whole batch (plain model.fit's way)"
    rates = {
        plain: per_second(graph, (x, y), BATCH),
        "XLA, whole batch": per_second(xla, (x, y), BATCH),
        "XLA, two halves at once (trainer.batch_splits=2)": per_second(halves, (x, y), BATCH),
        "XLA, two halves, hand-written LSTM gradient (the stage's default)": per_second(
            compiled(fused=True)[2], (x, y), BATCH
        ),
    }
    for name, rate in rates.items():
        print(f"[gradient] batch {BATCH}, {name}: {rate:,.0f} samples/s")
    print(f"[gradient] fastest over no XLA: {max(rates.values()) / rates[plain]:.2f}x")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # no options: --help prints the above, and a stray argument is refused
    matmul_shapes()
    gradients()
