"""Model stage: parameter counts of known configs, layer wiring and cuDNN-friendly defaults."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_cfg, model_cfg

from pipeline.config import validate
from pipeline.data import DataSpec
from pipeline.models import build_model

MNIST1D = DataSpec(input_shape=(40, 1), task="classification", output_size=10)


def model_for(*overrides, spec=MNIST1D):
    return build_model(validate(make_cfg(*overrides)).model, spec)


@pytest.mark.parametrize(
    ("overrides", "params"),
    [
        # 4 gates * (units * (inputs + units) + units) + dense head 256 * 10 + 10
        (["model=lstm"], 4 * (256 * 257 + 256) + 2570),
        # GRU with reset_after: 3 gates * (units * (inputs + units) + 2 * units)
        (["model=gru"], 3 * (128 * 129 + 2 * 128) + 1290),
        # two stacked SimpleRNNs: the second reads the first's 128 outputs
        (["model=simple_rnn"], (128 * 129 + 128) + (128 * 256 + 128) + 1290),
        (
            ["model=lstm", "model.units=16", "model.num_layers=2"],
            4 * (16 * 17 + 16) + 4 * (16 * 32 + 16) + 170,
        ),
        (
            ["model=gru", "model.units=8", "model.bidirectional=true"],
            2 * 3 * (8 * 9 + 16) + 16 * 10 + 10,
        ),
        (
            ["model=lstm", "model.units=4", "model.head_units=[6]"],
            4 * (4 * 5 + 4) + 4 * 6 + 6 + 6 * 10 + 10,
        ),
    ],
)
def test_parameter_counts(overrides, params):
    assert model_for(*overrides).count_params() == params


def test_stacked_layers_return_sequences_except_last():
    model = model_for("model=gru", "model.num_layers=3", "model.units=8")
    rnn = [layer for layer in model.layers if layer.name.startswith("gru")]
    assert [layer.return_sequences for layer in rnn] == [True, True, False]
    assert model.output_shape == (None, 10)


def test_sequence_output_for_sequence_targets():
    spec = DataSpec(input_shape=(30, 1), task="regression", output_size=1, sequence_output=True)
    model = model_for("model=lstm", "model.units=8", spec=spec)
    assert model.output_shape == (None, 30, 1)


def test_defaults_keep_cudnn_eligibility():
    for cell in ("lstm", "gru"):
        layer = model_for(f"model={cell}").layers[0]
        assert layer.cell.activation.__name__ == "tanh"
        assert layer.cell.recurrent_activation.__name__ == "sigmoid"
        assert layer.cell.recurrent_dropout == 0 and not layer.unroll and layer.cell.use_bias
        if cell == "gru":
            assert layer.cell.reset_after


def test_conv_front_end_before_the_recurrent_layers_and_refused_with_masks():
    from pipeline.config import ConfigError

    cfg = model_cfg(conv_filters=[8, 4], conv_kernel=3)
    model = build_model(cfg, MNIST1D)
    names = [layer.name for layer in model.layers]
    assert names.index("conv_1") < names.index("lstm_0")
    assert model.get_layer("conv_1").output.shape == (None, 40, 4)  # "same": length kept
    masked = DataSpec(input_shape=(40, 1), task="classification", output_size=10, mask_value=-1.0)
    with pytest.raises(ConfigError, match="model.conv_filters"):
        build_model(cfg, masked)


def _padded_pair(pooling, bidirectional=False):
    """The same weights built for 5 steps and for 12 (7 of them padding), and an input batch."""
    from pipeline.data.labelled import PAD_VALUE

    cfg = model_cfg(cell="gru", units=4, num_layers=2, pooling=pooling, bidirectional=bidirectional)
    spec = dict(task="classification", output_size=3, mask_value=PAD_VALUE)
    short = build_model(cfg, DataSpec(input_shape=(5, 2), **spec))
    long = build_model(cfg, DataSpec(input_shape=(12, 2), **spec))
    long.set_weights(short.get_weights())
    x = np.random.default_rng(0).normal(size=(3, 5, 2)).astype("float32")
    padded = np.concatenate([x, np.full((3, 7, 2), PAD_VALUE, "float32")], axis=1)
    return short, long, x, padded


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_pooling_gives_padded_steps_no_weight(pooling, bidirectional):
    import keras

    short, long, x, padded = _padded_pair(pooling, bidirectional)
    assert f"{pooling}_pooling" in [layer.name for layer in long.layers]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(short(x)), keras.ops.convert_to_numpy(long(padded)), atol=1e-5
    )
    # The same steps unmasked (zeros where the padding was) do move the output: the mask, not
    # the values, is what keeps padding out.
    unmasked = np.concatenate([x, np.zeros((3, 7, 2), "float32")], axis=1)
    assert not np.allclose(
        keras.ops.convert_to_numpy(short(x)), keras.ops.convert_to_numpy(long(unmasked)), atol=1e-3
    )


def test_attention_weights_are_a_softmax_over_the_real_steps():
    import keras

    from pipeline.models.layers import AttentionPooling

    pool = AttentionPooling()
    steps = np.random.default_rng(1).normal(size=(2, 6, 3)).astype("float32")
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2])
    out = keras.ops.convert_to_numpy(pool(steps, mask=mask))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in pool.score.weights)
    for row, real in enumerate(mask.sum(axis=1)):
        scores = steps[row, :real] @ kernel[:, 0] + bias[0]
        weights = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        np.testing.assert_allclose(out[row], weights @ steps[row, :real], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_pooled_model_saves_and_loads_as_keras(pooling, tmp_path):
    import keras

    _, model, _, padded = _padded_pair(pooling)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded.get_layer(f"{pooling}_pooling")) is type(
        model.get_layer(f"{pooling}_pooling")
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(padded)),
        keras.ops.convert_to_numpy(model(padded)),
        atol=1e-6,
    )


def test_attention_pooling_adds_one_score_per_step_and_keeps_cudnn_eligibility():
    from pipeline.models import cudnn_status, recurrent_layers

    plain = model_for("model=lstm", "model.units=8")
    pooled = model_for("model=lstm", "model.units=8", "model.pooling=attention")
    assert pooled.count_params() == plain.count_params() + 8 + 1  # Dense(1) over 8 features
    [lstm] = recurrent_layers(pooled)
    assert lstm.return_sequences and cudnn_status("LSTM", lstm.get_config()) == "eligible"
    assert pooled.output_shape == (None, 10)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_pooling_is_refused_with_outputs_at_every_step(pooling):
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match=r"`model.pooling=.*`model.pooling=last`"):
        model_cfg(pooling=pooling, return_sequences=True)
    spec = DataSpec(input_shape=(30, 1), task="regression", output_size=1, sequence_output=True)
    with pytest.raises(ConfigError, match=r"`model.pooling=.*`model.pooling=last`"):
        build_model(model_cfg(pooling=pooling, units=4), spec)
    with pytest.raises(
        ConfigError, match=r"`model.pooling`: expected one of last, mean, attention"
    ):
        model_cfg(pooling="max")


@pytest.mark.slow  # an end-to-end run
def test_attention_pooling_trains_end_to_end_on_padded_sequences(store, tmp_path):
    import keras

    from pipeline.train import train

    cfg = make_cfg(
        "data=uea",
        "data.name=JapaneseVowels",
        "trainer=smoke",
        "model=gru",
        "model.units=16",
        "model.pooling=attention",
    )
    metrics = train(cfg, tmp_path / "out")
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    loaded = keras.saving.load_model(tmp_path / "out" / "model.keras")  # raw inputs in
    assert [layer.name for layer in loaded.layers][-2:] == ["gru_x1", "probabilities"]
    trained = loaded.get_layer("gru_x1")  # the model as trained, inside it
    assert [layer.name for layer in trained.layers][-2:] == ["attention_pooling", "logits"]
