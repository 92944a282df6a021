"""What the run trains on and with which process-wide settings: TensorFlow started quietly, the
one console line naming the device, seeds, determinism and the dtype policy, and the training
setup as run tags."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

from pipeline.config import Config

# TensorFlow's native libraries log these at start-up, before they read TF_CPP_MIN_LOG_LEVEL
# (absl writes everything to stderr until it is initialised): the CPU-feature and oneDNN notes,
# the CUDA stubs not finding a driver, and `E0000 ... failed call to cuInit`, which reads like an
# error on every machine without a GPU. Only these are dropped; any other line is shown.
START_UP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+\] .*"
    r"|E\d{4} \d\d:\d\d:\d+\.\d+ +\d+ cuda_(platform|executor|diagnostics)\.cc:\d+\] .*"
    r"|.*rebuild TensorFlow with the appropriate compiler flags.*"
    r"|.*This TensorFlow binary is optimized to use available CPU instructions.*"
    r"|To enable the following instructions: .*)$"
)


@contextlib.contextmanager
def native_stderr_filtered():
    """Capture what native code writes to file descriptor 2 during the block, then write back
    every line that is not known start-up noise. Python's own errors are raised after the block
    and print as usual."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines()
                if line.strip() and not START_UP_NOISE.match(line)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def start_tensorflow() -> list[str]:
    """Import TensorFlow and Keras and look for GPUs with the start-up noise filtered out;
    returns the names of the GPUs TensorFlow will use."""
    with native_stderr_filtered():
        import keras  # noqa: F401 - imports TensorFlow, its backend
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return names


def device_line(gpus: list[str]) -> str:
    """The one console line saying what the run trains on."""
    if not gpus:
        return "Training on the CPU: no GPU found."
    if len(gpus) == 1:
        return f"Training on GPU: {gpus[0]}"
    return f"Training on {len(gpus)} GPUs: {', '.join(gpus)}"


def seed_everything(conf: Config) -> None:
    """Seed, op determinism and dtype policy, each set for every run: TensorFlow and Keras keep
    them per process, so without this one run's settings would carry into the next run in the
    same process (a sweep, a notebook, the tests). Op determinism left on, for one, makes Keras
    quietly drop XLA."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(conf.seed)  # Python, NumPy and TensorFlow
    if conf.trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        # TensorFlow's public API can turn determinism on but not off again; this is where the
        # switch it flips lives.
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
    keras.mixed_precision.set_global_policy(conf.trainer.mixed_precision or "float32")


def reseed(seed: int) -> None:
    """Python's, NumPy's, TensorFlow's and Keras' global generators back to `seed`."""
    import keras

    keras.utils.set_random_seed(seed)


def setup_tags(model) -> dict:
    """Mixed precision, XLA (as Keras resolved `jit_compile` for this model: off for cuDNN
    layers), the parts each batch's gradient is split into, the LSTM layers on the hand-written
    gradient and each recurrent layer's cuDNN status (the strategy's tags: distribution.py)."""
    import keras

    from pipeline.models import cudnn_tags

    return {
        "train.mixed_precision": keras.mixed_precision.global_policy().name,
        "train.jit_compile": str(model.jit_compile).lower(),
        # Set by compile_model; a model compiled elsewhere trains whole batches.
        "train.batch_splits": str(getattr(model, "batch_splits", 1)),
        "train.fused_lstm": ",".join(getattr(model, "fused_lstm", [])) or "none",
        **cudnn_tags(model),
    }
