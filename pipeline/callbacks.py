"""The Keras callbacks one training uses, in the order they must run."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import TrainerConfig


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
