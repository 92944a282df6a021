"""One model on several devices: the tf.distribute strategy `trainer.distribution` asks for, the
scope its model is built and compiled in, the console line naming its devices, and its run tags.

`mirrored` replicates the model on every visible GPU, else on every logical CPU device: one, the
CPU, unless the process split it into several (as tests/test_distribution.py does). Keras splits
each `data.batch_size` batch across the replicas and sums their gradients, so the global batch
and what is learned stay those of one device, up to the order of float sums.
"""

from __future__ import annotations

import contextlib

from pipeline.config import TrainerConfig


def replica_devices() -> list[str]:
    """The devices `mirrored` replicates over: the GPUs, else the logical CPU devices.

    MirroredStrategy() on its own would pick the GPUs too, but only the first CPU device."""
    import tensorflow as tf

    found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [device.name for device in found]


def make_strategy(trainer: TrainerConfig):
    """The strategy for `trainer.distribution`; None for `none` (Keras' own default placement)."""
    if trainer.distribution == "none":
        return None
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(devices=replica_devices())


def strategy_scope(strategy):
    """Where variables (weights, optimizer slots, metrics) are made: on every replica under a
    strategy; nothing changes without one."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def short_name(device: str) -> str:
    """'/job:localhost/replica:0/task:0/device:GPU:1' -> '/gpu:1'."""
    import tensorflow as tf

    spec = tf.DeviceSpec.from_string(device)
    return f"/{spec.device_type.lower()}:{spec.device_index}"


def strategy_devices(strategy) -> list[str]:
    """Short names of the devices the run trains on; without a strategy, where TensorFlow places
    ops by default (the first GPU, else the CPU)."""
    devices = strategy.extended.worker_devices if strategy is not None else replica_devices()[:1]
    return [short_name(device) for device in devices]


def distribution_line(strategy) -> str:
    """The console line under a strategy: its class and devices."""
    devices = strategy_devices(strategy)
    return (
        f"Distribution: {type(strategy).__name__} over {len(devices)} device(s): "
        f"{', '.join(devices)}"
    )


def distribution_tags(strategy) -> dict[str, str]:
    """`train.distribution` (the strategy's class, or none), `train.replicas`, `train.devices`."""
    return {
        "train.distribution": type(strategy).__name__ if strategy is not None else "none",
        "train.replicas": str(strategy.num_replicas_in_sync if strategy is not None else 1),
        "train.devices": ",".join(strategy_devices(strategy)),
    }
