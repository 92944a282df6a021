"""Training stage: its speed defaults (XLA, steps_per_execution, batch splits, tf.data) leave what
is learned exactly as plain Keras learns it, given the same samples in the same order."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import default_batch_splits, make_cfg, model_cfg, on_cpu, trainer_cfg

from pipeline.config import validate
from pipeline.config.schema import EVAL_BATCH_FACTOR
from pipeline.data import DataSpec, to_tf_dataset
from pipeline.models import build_model
from pipeline.training.compile import compile_model
from pipeline.training.devices import seed_everything

SPEC = DataSpec(input_shape=(12, 3), task="classification", output_size=4)


def arrays(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *SPEC.input_shape)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int32) + 2 * (x[:, -1, 1] > 0)
    return x, y.astype(np.int32)


def fresh_model(cell: str):
    import keras

    keras.utils.set_random_seed(7)
    return build_model(model_cfg(cell=cell, units=8), SPEC)


@pytest.mark.parametrize(
    "cell", [pytest.param("gru", marks=pytest.mark.slow), "lstm"]
)  # the LSTM on the hand-written gradient
@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_pipeline_defaults_learn_what_plain_keras_learns(cell):
    import keras

    seed_everything(validate(make_cfg()))  # a default run's process state, whatever ran before
    (x, y), val = arrays(320, 0), arrays(96, 1)
    plain = fresh_model(cell)
    plain.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    a = plain.fit(x, y, batch_size=32, validation_data=val, epochs=3, shuffle=False, verbose=0)

    stage = fresh_model(cell)
    trainer = trainer_cfg()  # the defaults: XLA on CPU, 32 steps per execution
    compile_model(stage, trainer, SPEC, learning_rate=1e-3, clipnorm=None)
    assert stage.steps_per_execution == 32
    assert stage.jit_compile is on_cpu()  # XLA, except for cuDNN layers on a GPU
    assert stage.fused_lstm == (["lstm_0"] if cell == "lstm" and on_cpu() else [])
    train_ds = to_tf_dataset(x, y, 32, shuffle=False, seed=0, cache=True)
    # Validation in the data stage's larger batches; plain fit validates in batches of 32.
    val_ds = to_tf_dataset(*val, EVAL_BATCH_FACTOR * 32, shuffle=False, seed=0, cache=True)
    b = stage.fit(train_ds, validation_data=val_ds, epochs=3, shuffle=False, verbose=0)

    # Per-epoch callbacks still see every epoch, and the numbers match up to float rounding.
    assert len(b.history["val_loss"]) == 3
    np.testing.assert_allclose(b.history["loss"], a.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(b.history["val_loss"], a.history["val_loss"], rtol=1e-4)
    assert b.history["val_accuracy"] == a.history["val_accuracy"]
    assert a.history["loss"][-1] < a.history["loss"][0]  # it trained: the check compares something


def probed_model(parts: int):
    """A small GRU whose first layer records the largest batch it saw in training; compiled by
    the stage with `trainer.batch_splits=parts`."""
    import keras
    import tensorflow as tf

    class LargestBatch(keras.layers.Layer):
        def build(self, input_shape):
            self.largest = self.add_weight(
                shape=(), dtype="int32", initializer="zeros", trainable=False
            )

        def call(self, x, training=False):
            if training:
                self.largest.assign(tf.maximum(self.largest, tf.shape(x)[0]))
            return x

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input(SPEC.input_shape), LargestBatch(), keras.layers.GRU(8), keras.layers.Dense(4)]
    )
    compile_model(model, trainer_cfg(batch_splits=parts), SPEC, learning_rate=1e-3, clipnorm=None)
    return model


@pytest.mark.slow  # 10-15 s of training: out of the fast tier
def test_batch_splits_train_on_parts_and_learn_what_the_whole_batch_learns():
    (x, y), val = arrays(97, 0), arrays(96, 1)  # batches of 32, 32, 32 and 1: a part is empty
    train_ds = to_tf_dataset(x, y, 32, shuffle=False, seed=0, cache=True)
    val_ds = to_tf_dataset(*val, 32, shuffle=False, seed=0, cache=True)
    history, largest = {}, {}
    for parts in (1, 3):
        model = probed_model(parts)
        fit = model.fit(train_ds, validation_data=val_ds, epochs=3, shuffle=False, verbose=0)
        history[parts], largest[parts] = fit.history, int(model.layers[0].largest.numpy())
        assert model.jit_compile is True  # evaluation keeps its XLA function

    assert largest == {1: 32, 3: 11}  # 32 = 10 + 11 + 11: each XLA call sees only its part
    for key in ("loss", "accuracy", "val_loss"):
        np.testing.assert_allclose(history[3][key], history[1][key], rtol=1e-5)
    assert history[3]["val_accuracy"] == history[1]["val_accuracy"]
    assert history[1]["loss"][-1] < history[1]["loss"][0]


def test_batch_splits_default_to_two_on_a_multicore_cpu_for_narrow_rnns_without_dropout():
    configs = {
        "plain": model_cfg(cell="gru", units=8),
        "dropout": model_cfg(cell="gru", units=8, dropout=0.2),
        "wide": model_cfg(cell="lstm", units=256),
        "simple_rnn": model_cfg(cell="simple_rnn", units=8),
    }
    splits = {}
    for name, cfg in configs.items():
        model = build_model(cfg, SPEC)
        compile_model(model, trainer_cfg(), SPEC, learning_rate=1e-3, clipnorm=None)
        splits[name] = model.batch_splits
    # Concurrent parts would share one dropout seed state; 256-unit layers measured slower split.
    assert splits == {
        "plain": default_batch_splits(),
        "dropout": 1,
        "wide": 1,
        "simple_rnn": default_batch_splits(),
    }


@pytest.mark.parametrize(
    ("settings", "fused"),
    [
        (dict(), on_cpu()),  # null: under XLA on a CPU
        (dict(fused_lstm=False), False),
        (dict(jit_compile=False), False),  # without XLA its loop is slower than Keras'
        (dict(jit_compile=False, fused_lstm=True), True),
    ],
)
def test_fused_lstm_where_it_measured_faster_or_where_asked(settings, fused):
    model = build_model(model_cfg(cell="lstm", units=8, num_layers=2), SPEC)
    compile_model(model, trainer_cfg(**settings), SPEC, learning_rate=1e-3, clipnorm=None)
    assert model.fused_lstm == (["lstm_0", "lstm_1"] if fused else [])
    assert ("inner_loop" in vars(model.layers[0])) is fused


def test_fused_lstm_default_leaves_wide_layers_on_keras_loop():
    model = build_model(model_cfg(cell="lstm", units=256), SPEC)  # the default model=lstm
    compile_model(model, trainer_cfg(), SPEC, learning_rate=1e-3, clipnorm=None)
    assert model.fused_lstm == []
    forced = build_model(model_cfg(cell="lstm", units=256), SPEC)
    compile_model(forced, trainer_cfg(fused_lstm=True), SPEC, learning_rate=1e-3, clipnorm=None)
    assert forced.fused_lstm == ["lstm_0"]
