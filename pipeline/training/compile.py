"""How the training stage compiles a model: optimizer, loss and metrics that fit the task, XLA,
and the CPU speed tricks chosen by `pipeline.training.cpu.policy`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import Config, TrainerConfig
from pipeline.training.cpu.policy import apply_cpu_speedups

if TYPE_CHECKING:
    from pipeline.data import DataSpec


def compile_model(
    model, trainer: TrainerConfig, spec: DataSpec, learning_rate: float, clipnorm: float | None
) -> None:
    """Attach optimizer, loss and metrics that fit the task."""
    import keras

    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }
    kwargs = {"learning_rate": learning_rate}
    if clipnorm:
        kwargs["clipnorm"] = clipnorm
    if trainer.weight_decay:
        kwargs["weight_decay"] = trainer.weight_decay
    if spec.task == "classification":
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        loss = keras.losses.MeanSquaredError()
        metrics = [
            keras.metrics.RootMeanSquaredError(name="rmse"),
            keras.metrics.MeanAbsoluteError(name="mae"),
        ]
    model.compile(
        optimizer=optimizers[trainer.optimizer](**kwargs),
        loss=loss,
        metrics=metrics,
        steps_per_execution=resolve_steps_per_execution(trainer),
        jit_compile=resolve_jit(trainer),
    )
    # Under a strategy XLA is off, and with it both CPU tricks (`policy.xla_on_cpu`); the config
    # refuses them there when set by hand (batch_splits > 1, fused_lstm=true, jit_compile=true).
    apply_cpu_speedups(model, trainer)


def resolve_steps_per_execution(trainer: TrainerConfig) -> int:
    """`trainer.steps_per_execution`, but 1 under a strategy: Keras 3's loop over several steps
    per call fails on two or more replicas (InvalidArgumentError "You must feed a value for
    placeholder tensor", keras-team/keras#19246; measured on two logical CPUs)."""
    return 1 if trainer.distribution != "none" else trainer.steps_per_execution


def resolve_jit(trainer: TrainerConfig):
    """`trainer.jit_compile: null` means what measured fastest: XLA on CPUs, Keras' choice on GPUs.

    On CPU, XLA fuses each time step's small ops into one kernel: 1.5-3x the samples/s of
    plain graph mode for MNIST-1D-sized RNNs, about even for 28-wide rows at batch 128 and 15%
    slower at batch 512 (large matmuls, where `jit_compile=false` pays), for 5-10 s of
    compilation per run (scripts/bench_throughput.py). On GPU, Keras turns XLA off by itself
    for layers that use the cuDNN kernel. Deterministic runs go without: Keras turns XLA off
    (with a warning) when TensorFlow's op determinism is on. So do runs under a strategy: Keras'
    own "auto" turns XLA off there, and an XLA step on two or more replicas fails.
    """
    if trainer.jit_compile is not None:
        return trainer.jit_compile
    if trainer.deterministic or trainer.distribution != "none":
        return False
    import tensorflow as tf

    return "auto" if tf.config.list_physical_devices("GPU") else True


def optimizer_settings(conf: Config) -> tuple[float, float | None]:
    """Learning rate and clipnorm: the trainer's when set, else those the model recommends."""
    return (
        conf.trainer.learning_rate or conf.model.learning_rate,
        conf.trainer.clipnorm or conf.model.clipnorm,
    )
