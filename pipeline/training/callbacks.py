"""The callbacks of one fit, in the order they must run: the NaN guard, the learning-rate
schedule, early stopping, the per-epoch backup, then logging, pruning and the best checkpoint,
and last the check that stops training between steps on Ctrl-C or SIGTERM."""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.config import PipelineError, TrainerConfig
from pipeline.tracking.runs import raise_held_interrupt
from pipeline.training import resume


class DivergedError(PipelineError):
    """The loss became NaN or infinite."""

    def __init__(self, epoch: int, value: float):
        self.epoch = epoch
        self.mlflow_tags = {"failure_reason": f"nan_loss at epoch {epoch + 1}"}
        super().__init__(
            f"Training diverged: the loss became {value} in epoch {epoch + 1}. Lower "
            "`trainer.learning_rate`, set `trainer.clipnorm=1.0`, or check the data for extreme values."
        )


def nan_guard():
    """A callback that stops training at the first NaN/inf loss by raising DivergedError."""
    import keras

    class NanGuard(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def _check(self, logs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise DivergedError(self.epoch, float(loss))

        def on_train_batch_end(self, batch, logs=None):
            self._check(logs)

        def on_epoch_end(self, epoch, logs=None):
            self._check(logs)

    return NanGuard()


def build_callbacks(trainer: TrainerConfig, monitor: str, mode: str, backup_dir: Path, extra: list):
    """Return (callbacks, early_stopping or None).

    Order matters at each epoch's end: the LR schedule and early stopping update their state
    first, then the backup writes that state, then logging and pruning (`extra`) run.
    """
    import keras

    callbacks = [nan_guard()]
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
        early_stopping = resume.resumable_early_stopping(
            monitor=monitor,
            mode=mode,
            patience=trainer.early_stopping_patience,
            restore_best_weights=True,
        )
        callbacks.append(early_stopping)
    callbacks.append(resume.training_backup(backup_dir, early_stopping))
    return callbacks + list(extra) + [interrupt_check()], early_stopping


def interrupt_check():
    """A callback raising a Ctrl-C or SIGTERM held by `held_interrupts` at the end of a step.

    Last in the list, so an epoch that ended is backed up and logged before training stops.
    """
    import keras

    class InterruptCheck(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise_held_interrupt()

        def on_test_batch_end(self, batch, logs=None):
            raise_held_interrupt()

        def on_epoch_end(self, epoch, logs=None):
            raise_held_interrupt()

    return InterruptCheck()


def best_checkpoint(path: Path, monitor: str, mode: str):
    """A Keras callback that writes the best epoch's model (by `monitor`) to `path` at the end.

    Unlike ModelCheckpoint(save_best_only=True), which writes a file at every improvement
    (30-100 ms each, most epochs early on), it copies the weights in memory (under 1 ms) and
    writes once, when training ends.
    """
    import keras
    import numpy as np

    better = np.greater if mode == "max" else np.less

    class BestCheckpoint(keras.callbacks.Callback):
        best, weights = None, None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(monitor)
            if value is not None and (self.best is None or better(value, self.best)):
                self.best, self.weights = value, self.model.get_weights()

        def on_train_end(self, logs=None):
            if self.weights is not None:
                resume.save_with_weights(self.model, self.weights, path)

    return BestCheckpoint()
