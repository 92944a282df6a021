"""How the training stage drives Keras: the compiled model's optimizer, loss and metrics, and the
callbacks of one fit, in the order they must run."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config, TrainerConfig
from pipeline.data import DataSpec
from pipeline.errors import ConfigError


def build_callbacks(trainer: TrainerConfig, monitor: str, mode: str, backup_dir: Path, extra: list):
    """Return (callbacks, early_stopping or None).

    Order matters at each epoch's end: the LR schedule and early stopping update their state
    first, then the backup writes that state, then logging and pruning (`extra`) run.
    """
    import keras

    from pipeline import resilience

    callbacks = [resilience.nan_guard()]
    if trainer.lr_plateau_patience is not None:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                mode=mode,
                factor=trainer.lr_plateau_factor,
                patience=trainer.lr_plateau_patience,
                verbose=0,
            )
        )
    early_stopping = None
    if trainer.early_stopping_patience is not None:
        early_stopping = resilience.resumable_early_stopping(
            monitor=monitor,
            mode=mode,
            patience=trainer.early_stopping_patience,
            restore_best_weights=True,
        )
        callbacks.append(early_stopping)
    callbacks.append(resilience.training_backup(backup_dir, early_stopping))
    return callbacks + list(extra), early_stopping


def task_metric(task: str) -> str:
    """The validation metric a task is judged by when none is configured."""
    return "val_accuracy" if task == "classification" else "val_loss"


def monitored_metric(trainer: TrainerConfig, spec: DataSpec) -> tuple[str, str]:
    """The validation metric early stopping watches, and whether higher is better."""
    name = trainer.monitor or task_metric(spec.task)
    mode = "max" if "acc" in name else "min"
    return name, mode


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
        steps_per_execution=trainer.steps_per_execution,
        jit_compile=resolve_jit(trainer),
    )
    model.batch_splits = resolve_batch_splits(trainer, model)  # read back for the run's tags
    if model.batch_splits > 1:
        from pipeline.batch_splits import use_batch_splits

        use_batch_splits(model, model.batch_splits)
    model.fused_lstm = resolve_fused_lstm(trainer, model)  # layer names, for the run's tags


def resolve_fused_lstm(trainer: TrainerConfig, model) -> list[str]:
    """Give eligible LSTM layers the hand-written gradient (pipeline/fused_lstm.py) where it
    measured faster: `null` means layers of at most MAX_FUSED_UNITS units under XLA on a CPU
    (without XLA its loop runs 0.75-0.8x as fast as Keras'; on a GPU, cuDNN does the same job);
    `true` means every eligible layer. Returns the fused layers' names."""
    from pipeline.environment import xla_on_cpu
    from pipeline.fused_lstm import MAX_FUSED_UNITS, use_fused_lstm

    if trainer.fused_lstm is None:
        return use_fused_lstm(model, max_units=MAX_FUSED_UNITS) if xla_on_cpu(model) else []
    return use_fused_lstm(model) if trainer.fused_lstm else []


def resolve_batch_splits(trainer: TrainerConfig, model) -> int:
    """How many concurrent parts each training batch's gradient is computed in (see
    pipeline/batch_splits.py); `null` means two where that measured faster and is exact."""
    from pipeline.batch_splits import auto_splits

    if trainer.batch_splits is None:
        return auto_splits(model)
    if trainer.batch_splits > 1 and model.jit_compile is not True:
        # The config check caught XLA turned off by the config; this is Keras turning it off
        # (for cuDNN layers on a GPU).
        raise ConfigError(
            f"trainer.batch_splits={trainer.batch_splits} computes each part with XLA, which "
            "Keras turned off for this model (layers on the cuDNN kernel of a GPU compile "
            "without it). Set trainer.batch_splits=1 or null."
        )
    return trainer.batch_splits


def resolve_jit(trainer: TrainerConfig):
    """`trainer.jit_compile: null` means what measured fastest: XLA on CPUs, Keras' choice on GPUs.

    On CPU, XLA fuses each time step's small ops into one kernel: 1.5-3x the samples/s of
    plain graph mode for MNIST-1D-sized RNNs, about even for 28-wide rows at batch 128 and 15%
    slower at batch 512 (large matmuls, where `jit_compile=false` pays), for 5-10 s of
    compilation per run (scripts/bench_throughput.py). On GPU, Keras turns XLA off by itself
    for layers that use the cuDNN kernel. Deterministic runs go without: Keras turns XLA off
    (with a warning) when TensorFlow's op determinism is on.
    """
    if trainer.jit_compile is not None:
        return trainer.jit_compile
    if trainer.deterministic:
        return False
    import tensorflow as tf

    return "auto" if tf.config.list_physical_devices("GPU") else True


def optimizer_settings(conf: Config) -> tuple[float, float | None]:
    """Learning rate and clipnorm: the trainer's when set, else those the model recommends."""
    return (
        conf.trainer.learning_rate or conf.model.learning_rate,
        conf.trainer.clipnorm or conf.model.clipnorm,
    )
