"""Resuming: per-epoch training backups written atomically, and the checks that decide whether
an interrupted run may be continued (`resume=<run_id>`).

A backup is three files in one folder: `epoch-N.weights.h5` (model + optimizer variables),
`epoch-N.best.weights.h5` (the best weights early stopping will restore) and `state.json`,
which names the epoch files. Each file is written to a temporary name and renamed into place;
`state.json` is replaced last, so a kill at any moment leaves the previous complete backup
(the older epoch files are removed only after the new state is in place).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pipeline.config.errors import ConfigError

# Keys that may differ between a run and its resumption: how long to train, where to log.
RESUMABLE_DIFFERENCES = ("trainer.epochs", "resume", "tracking.run_name")


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename tmp over path: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp name ends with the real name: Keras insists on suffixes like `.weights.h5`.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=f"-{path.name}")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the final file should read like any other
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_with_weights(model, weights, path: Path) -> None:
    """Write `model` as it would be with `weights` (a `.weights.h5` path saves weights only,
    anything else the whole model), atomically, leaving the model's own weights as they were."""
    current = model.get_weights()
    model.set_weights(weights)
    try:
        if path.name.endswith(".weights.h5"):
            atomic_write(path, model.save_weights)
        else:
            atomic_write(path, model.save)
    finally:
        model.set_weights(current)


def read_backup(folder: Path) -> dict[str, Any] | None:
    """The last complete backup's state (with absolute file paths), or None if there is none."""
    state_file = Path(folder) / "state.json"
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    for key in ("weights", "best_weights"):
        if state.get(key):
            state[key] = str(Path(folder) / state[key])
    return state


def training_backup(folder: Path, early_stopping=None):
    """A callback writing the full training state at the end of every epoch."""
    import keras

    folder = Path(folder)

    class TrainingBackup(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            previous = read_backup(folder)
            weights = folder / f"epoch-{epoch}.weights.h5"
            atomic_write(weights, lambda tmp: self.model.save_weights(tmp))
            state = {"epoch": epoch, "weights": weights.name, "best_weights": None}
            if early_stopping is not None:
                state.update(early_stopping_state(early_stopping))
                if early_stopping.best_weights is not None:
                    best = folder / f"epoch-{epoch}.best.weights.h5"
                    save_with_weights(self.model, early_stopping.best_weights, best)
                    state["best_weights"] = best.name
            atomic_write(folder / "state.json", lambda tmp: Path(tmp).write_text(json.dumps(state)))
            for key in ("weights", "best_weights"):  # the old epoch's files, now unreferenced
                old = (previous or {}).get(key)
                if old and Path(old).name not in (state["weights"], state["best_weights"]):
                    Path(old).unlink(missing_ok=True)

    return TrainingBackup()


def early_stopping_state(cb) -> dict[str, Any]:
    best = float(cb.best) if cb.best is not None else None
    return {"es_wait": int(cb.wait), "es_best": best, "es_best_epoch": int(cb.best_epoch)}


def resumable_early_stopping(**kwargs):
    """keras.callbacks.EarlyStopping that can start from a backup's wait/best/best weights
    (Keras resets them in on_train_begin)."""
    import keras

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        initial_state: dict[str, Any] | None = None

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if self.initial_state:
                for key, value in self.initial_state.items():
                    setattr(self, key, value)

    return ResumableEarlyStopping(**kwargs)


def restore(model, early_stopping, state: dict[str, Any]) -> int:
    """Load a backup into a compiled model (and early stopping); return the next epoch."""
    # Inside the strategy the model was built under, so that the optimizer's variables are made
    # (and the loaded values land) on every replica; without one this is TensorFlow's default
    # strategy, whose scope changes nothing.
    with model.distribute_strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        if early_stopping is not None and state.get("es_best") is not None:
            initial = {
                "wait": state["es_wait"],
                "best": state["es_best"],
                "best_epoch": state["es_best_epoch"],
            }
            if state.get("best_weights"):
                model.load_weights(state["best_weights"])
                initial["best_weights"] = model.get_weights()
            early_stopping.initial_state = initial
        model.load_weights(state["weights"])
    return state["epoch"] + 1


def config_differences(logged: dict[str, str], current: dict[str, Any]) -> list[str]:
    """Param-by-param differences between a run's logged config and the current one,
    ignoring the keys a resumption may change."""
    diffs = []
    for key in sorted(set(logged) | set(current)):
        if key in RESUMABLE_DIFFERENCES or key.startswith("hydra"):
            continue
        if key not in logged or key not in current:
            where = "the run" if key in logged else "this config"
            diffs.append(f"{key}: only in {where}")
        elif str(logged[key]) != str(current[key]):
            diffs.append(f"{key}: run has {logged[key]!r}, now {current[key]!r}")
    return diffs


def resumable_state(uri: str, run_id: str, current: dict[str, Any]) -> dict[str, Any]:
    """The last backup of run `run_id`, if that run may be continued with this config."""
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.store import open_client, sqlite_path

    db = sqlite_path(uri)
    try:
        if db is not None and not db.exists():  # no store yet: do not create one to look
            raise MlflowException(f"no store at {db}")
        run = open_client(uri).get_run(run_id)
    except MlflowException:
        raise ConfigError(
            f"`resume={run_id}` names no run in the MLflow store {uri}. Copy the id from the "
            "interrupted run's console message or from the MLflow UI."
        ) from None
    if run.info.status == "FINISHED":
        raise ConfigError(
            f"Run {run_id} already FINISHED; there is nothing to resume. Start a new run instead "
            "(drop `resume=`)."
        )
    diffs = config_differences(run.data.params, current)
    if diffs:
        raise ConfigError(
            f"Cannot resume run {run_id}: the config differs from the run's in "
            f"{'; '.join(diffs)}. Repeat the run's own overrides (only `trainer.epochs` may change)."
        )
    folder = run.data.tags.get("backup_dir")
    state = read_backup(Path(folder)) if folder else None
    if state is None:
        raise ConfigError(
            f"Run {run_id} has no training backup to resume from (it stopped before its first "
            f"epoch ended, or its backup folder {folder} is gone). Start a new run instead."
        )
    return {**state, "backup_dir": folder}
