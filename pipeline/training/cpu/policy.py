"""When the CPU speed tricks are used: the one place that decides, from the trainer config and
the compiled model, whether a fit splits its batches (batch_splits.py) and which LSTM layers get
the hand-written gradient (fused_lstm.py).

Both measured faster only under XLA on a CPU and only for narrow layers (scripts/
bench_throughput.py, docs/performance.md): the preset `experiment=mnist_rows_lstm` (128 units)
gets both by default, the default `model=lstm` (256 units) neither. `trainer.batch_splits` and
`trainer.fused_lstm` force them on or off.
"""

from __future__ import annotations

import os

from pipeline.config import ConfigError, TrainerConfig

# Widest recurrent layer that two parts measured faster for. At 128 units XLA runs each step's
# matmuls on one core and two parts use both: 1.3x the samples/s (rows LSTM at batch 128, MNIST-1D
# GRU at 64). At 256 units its matmuls already spread over the cores and two parts only contend:
# 0.85-0.95x (MNIST-1D LSTM and GRU at 64, rows LSTM at 128), so the default `model=lstm` keeps
# whole batches.
MAX_SPLIT_UNITS = 128

# Widest layer the hand-written gradient measured faster for (fits of the rows LSTM: 1.49x the
# samples/s at batch 32, 1.06x at 128). At 256 units, where each step's matmuls are large enough
# on their own, it measured even (0.99x, MNIST-1D at batch 64), so `trainer.fused_lstm: null`
# leaves such layers on Keras' loop.
MAX_FUSED_UNITS = 128


def xla_on_cpu(model) -> bool:
    """Whether `model` trains under XLA on a CPU, where both tricks measured faster."""
    import tensorflow as tf

    return model.jit_compile is True and not tf.config.list_physical_devices("GPU")


def auto_splits(model) -> int:
    """`trainer.batch_splits: null`: two parts where they measured faster (CPU, XLA, two or more
    cores, recurrent layers of at most MAX_SPLIT_UNITS units) and are exact (no randomness in
    the forward pass), else the whole batch."""
    import tensorflow as tf

    from pipeline.models import recurrent_layers
    from pipeline.training.cpu.batch_splits import draws_random_numbers

    if not xla_on_cpu(model):
        return 1
    if tf.distribute.get_strategy().num_replicas_in_sync > 1 or draws_random_numbers(model):
        return 1
    if any(layer.units > MAX_SPLIT_UNITS for layer in recurrent_layers(model)):
        return 1
    return 2 if len(os.sched_getaffinity(0)) >= 2 else 1


def resolve_batch_splits(trainer: TrainerConfig, model) -> int:
    """How many concurrent parts each training batch's gradient is computed in; `null` means
    two where that measured faster and is exact."""
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


def resolve_fused_lstm(trainer: TrainerConfig, model) -> list[str]:
    """Give eligible LSTM layers the hand-written gradient where it measured faster: `null`
    means layers of at most MAX_FUSED_UNITS units under XLA on a CPU (without XLA its loop runs
    0.75-0.8x as fast as Keras'; on a GPU, cuDNN does the same job); `true` means every
    eligible layer. Returns the fused layers' names."""
    from pipeline.training.cpu.fused_lstm import use_fused_lstm

    if trainer.fused_lstm is None:
        return use_fused_lstm(model, max_units=MAX_FUSED_UNITS) if xla_on_cpu(model) else []
    return use_fused_lstm(model) if trainer.fused_lstm else []


def apply_cpu_speedups(model, trainer: TrainerConfig) -> None:
    """Apply both decisions to a compiled model, and keep them on it for the run's tags
    (`model.batch_splits`, `model.fused_lstm`)."""
    from pipeline.training.cpu.batch_splits import use_batch_splits

    model.batch_splits = resolve_batch_splits(trainer, model)
    if model.batch_splits > 1:
        use_batch_splits(model, model.batch_splits)
    model.fused_lstm = resolve_fused_lstm(trainer, model)
