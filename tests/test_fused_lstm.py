"""The hand-written LSTM gradient (pipeline/fused_lstm.py) computes what Keras' own loop computes:
outputs, states and every gradient, with and without XLA, in the layouts models use."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.training.cpu.fused_lstm import use_fused_lstm


def lstm_model(layers: int = 1, sequences: bool = False, bidirectional: bool = False, **kwargs):
    import keras

    keras.utils.set_random_seed(3)
    stack = [keras.Input((9, 5))]
    for i in range(layers):
        layer = keras.layers.LSTM(
            6, return_sequences=sequences or i < layers - 1, name=f"lstm_{i}", **kwargs
        )
        stack.append(keras.layers.Bidirectional(layer) if bidirectional else layer)
    stack.append(keras.layers.Dense(3))
    return keras.Sequential(stack)


def outputs_and_gradients(model, x, y, jit: bool):
    """Model output, and the gradients (weights and x) of a loss over every output value."""
    import tensorflow as tf

    def run(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = model(x, training=True)
            loss = tf.reduce_sum(tf.square(out - y))
        return out, tape.gradient(loss, [x] + [v.value for v in model.trainable_variables])

    out, grads = tf.function(run, jit_compile=jit)(x, y)
    return [out.numpy()] + [g.numpy() for g in grads]


@pytest.mark.parametrize("jit", [True, False])
@pytest.mark.parametrize(
    "layout",
    [
        dict(),
        dict(sequences=True),
        dict(layers=2),
        dict(bidirectional=True),  # its backward layer runs with go_backwards=True
    ],
)
def test_same_outputs_and_gradients_as_keras(layout, jit):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(7, 9, 5)).astype(np.float32))
    plain = lstm_model(**layout)
    y = tf.constant(rng.normal(size=plain.output_shape[1:]).astype(np.float32)[None])
    fused = lstm_model(**layout)
    names = use_fused_lstm(fused)
    assert len(names) == (2 if layout.get("layers") or layout.get("bidirectional") else 1)

    want = outputs_and_gradients(plain, x, y, jit)
    got = outputs_and_gradients(fused, x, y, jit)
    assert len(got) == len(want) == 2 + len(plain.trainable_variables)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert np.abs(want[1]).max() > 1e-3  # the input gradient is not trivially zero


def test_only_layers_it_computes_exactly_are_fused():
    import keras

    keep = {
        "relu": keras.layers.LSTM(4, activation="relu"),
        "hard_sigmoid": keras.layers.LSTM(4, recurrent_activation="hard_sigmoid"),
        "no_bias": keras.layers.LSTM(4, use_bias=False),
        "recurrent_dropout": keras.layers.LSTM(4, recurrent_dropout=0.1),
        "unroll": keras.layers.LSTM(4, unroll=True),
        "gru": keras.layers.GRU(4),
    }
    model = keras.Sequential(
        [keras.Input((5, 2))]
        + [keras.layers.Lambda(lambda t: t)]  # a non-recurrent layer is skipped too
        + [keras.layers.LSTM(4, return_sequences=True, name="plain")]
    )
    assert use_fused_lstm(model) == ["plain"]
    for name, layer in keep.items():
        model = keras.Sequential([keras.Input((5, 2)), layer])
        assert use_fused_lstm(model) == [], name


@pytest.mark.slow  # trains twice: out of the fast tier
def test_input_dropout_and_masks_use_keras_loop_and_still_train():
    import keras

    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 9, 5)).astype(np.float32)
    x[:4, 6:] = 0.0  # padded steps for the mask
    y = rng.normal(size=(16, 3)).astype(np.float32)
    for head in ([keras.layers.Masking(0.0)], []):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((9, 5)), *head, keras.layers.LSTM(6, dropout=0.3), keras.layers.Dense(3)]
        )
        assert len(use_fused_lstm(model)) == 1
        model.compile(optimizer="adam", loss="mse", jit_compile=True)
        loss = model.fit(x, y, epochs=3, batch_size=8, verbose=0).history["loss"]
        assert np.isfinite(loss).all() and loss[-1] < loss[0]


def test_a_saved_model_is_a_plain_keras_lstm(tmp_path):
    import keras

    model = lstm_model(sequences=True)
    use_fused_lstm(model)
    x = np.random.default_rng(2).normal(size=(4, 9, 5)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # no custom objects needed
    assert type(loaded.layers[0]) is keras.layers.LSTM
    assert "inner_loop" not in vars(loaded.layers[0])
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("use", ["cell_state", "both_states"])
def test_gradients_through_the_returned_states(use):
    """An encoder that passes on its states (return_state=True): the loss may reach the last
    cell state, which the sequence-output tests above never differentiate."""
    import keras
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(4).normal(size=(5, 9, 5)).astype(np.float32))
    grads = []
    for fuse in (False, True):
        keras.utils.set_random_seed(5)
        layer = keras.layers.LSTM(6, return_state=True)
        layer(x)
        if fuse:
            model = keras.Sequential([keras.Input((9, 5)), layer])
            assert use_fused_lstm(model) == [layer.name]
        with tf.GradientTape() as tape:
            tape.watch(x)
            _, h, c = layer(x)
            loss = tf.reduce_sum(c * c) + (tf.reduce_sum(h) if use == "both_states" else 0.0)
        grads.append(tape.gradient(loss, [x, *layer.trainable_variables]))
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
