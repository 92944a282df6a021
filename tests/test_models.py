"""Model stage: parameter counts of known configs, layer wiring and cuDNN-friendly defaults."""

from __future__ import annotations

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
