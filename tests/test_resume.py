"""Fault tolerance pieces: atomic files, backups that restore the full training state, the NaN
guard and the resume config check."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pipeline.training import callbacks, resume


def tiny_model(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((5, 2)), keras.layers.GRU(4), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return model


def toy_data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5, 2)).astype("float32")
    return x, x.sum(axis=(1, 2))[:, None]


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")

    def half_write(tmp):
        with open(tmp, "w") as f:
            f.write("new but incompl")
        raise OSError("disk full")

    with pytest.raises(OSError):
        resume.atomic_write(target, half_write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left


def test_killed_writer_leaves_a_complete_file(tmp_path):
    """SIGKILL a process that rewrites a large file in a loop: what remains always loads."""
    target = tmp_path / "arrays.npz"
    script = textwrap.dedent(f"""
        import numpy as np
        from pathlib import Path
        from pipeline.training.resume import atomic_write
        i = 0
        while True:
            data = np.full(2_000_000, i, dtype=np.float64)
            atomic_write(Path({str(target)!r}), lambda tmp: np.savez(open(tmp, "wb"), data=data))
            i += 1
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # let it complete a few writes, then kill it mid-way
            proc.stdout.readline()
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    with np.load(target) as f:
        data = f["data"]
    assert data.shape == (2_000_000,) and np.all(data == data[0])


def test_backup_restores_weights_optimizer_and_early_stopping(tmp_path):
    x, y = toy_data()
    model = tiny_model()
    es = resume.resumable_early_stopping(monitor="loss", patience=5, restore_best_weights=True)
    model.fit(x, y, epochs=3, verbose=0, callbacks=[es, resume.training_backup(tmp_path, es)])
    state = resume.read_backup(tmp_path)
    assert state["epoch"] == 2 and state["es_best"] is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch-2.best.weights.h5",
        "epoch-2.weights.h5",
        "state.json",
    ]  # older epochs cleaned

    fresh = tiny_model(seed=1)
    es2 = resume.resumable_early_stopping(monitor="loss", patience=5, restore_best_weights=True)
    next_epoch = resume.restore(fresh, es2, state)
    assert next_epoch == 3
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy())
    fresh.fit(x, y, initial_epoch=next_epoch, epochs=4, verbose=0, callbacks=[es2])
    assert es2.best <= state["es_best"]  # continued from the saved best, not from scratch


def test_nan_guard_raises_with_epoch():
    x, y = toy_data()
    y[3] = np.nan
    model = tiny_model()
    with pytest.raises(callbacks.DivergedError, match="epoch 1") as raised:
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callbacks.nan_guard()])
    assert raised.value.mlflow_tags == {"failure_reason": "nan_loss at epoch 1"}


def test_config_differences_ignore_training_length():
    logged = {"model.units": "16", "trainer.epochs": "5", "seed": "1"}
    same = {"model.units": 16, "trainer.epochs": 20, "seed": 1}
    assert resume.config_differences(logged, same) == []
    other = {"model.units": 32, "trainer.epochs": 5, "seed": 1}
    assert resume.config_differences(logged, other) == ["model.units: run has '16', now 32"]


def test_best_checkpoint_keeps_the_best_epoch_not_the_last(tmp_path):
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    callback = callbacks.best_checkpoint(tmp_path / "best.keras", "val_loss", "min")
    callback.set_model(model)
    weights = {}
    for epoch, val_loss in enumerate([0.9, 0.4, 0.7]):  # epoch 1 is the best
        model.set_weights([np.full((3, 1), float(epoch)), np.zeros(1)])
        weights[epoch] = model.get_weights()
        callback.on_epoch_end(epoch, {"val_loss": val_loss})
    callback.on_train_end()
    saved = keras.saving.load_model(tmp_path / "best.keras")
    np.testing.assert_array_equal(saved.get_weights()[0], weights[1][0])
    np.testing.assert_array_equal(model.get_weights()[0], weights[2][0])  # model left as it was
