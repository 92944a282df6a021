"""Composition of every option of every group, and the schema's refusals."""

from __future__ import annotations

import pytest
from conftest import make_cfg
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from pipeline.cli import CONF_DIR
from pipeline.config import ConfigError, validate

GROUP_OPTIONS = [
    (group.name, path.stem)
    for group in sorted(CONF_DIR.iterdir())
    if group.is_dir()
    for path in sorted(group.glob("*.yaml"))
]
EXTRA = {("data", "csv"): ["data.path=x.csv", "data.target=value"]}


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_option_composes_and_validates(group, option):
    cfg = make_cfg(f"{group}={option}", *EXTRA.get((group, option), []))
    conf = validate(cfg)
    assert conf.model.units > 0 and conf.trainer.epochs >= 1


def test_default_composition():
    conf = validate(make_cfg())
    assert (conf.data.name, conf.model.cell, conf.trainer.epochs) == ("mnist1d", "lstm", 100)
    assert conf.tracking.experiment_name == "rnn-pipeline"


def test_smoke_trainer_is_tiny():
    conf = validate(make_cfg("trainer=smoke"))
    assert conf.trainer.epochs == 1 and conf.trainer.limit_train_batches <= 5


@pytest.mark.parametrize(
    "override", ["modle=lstm", "model.unitz=4", "data.batchsize=3", "trainer.epoch=2"]
)
def test_misspelt_key_fails_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        make_cfg(override)


@pytest.mark.parametrize(
    "override",
    [
        "model.units=abc",
        "trainer.epochs=1.5",
        "model.bidirectional=maybe",
        "trainer.fused_lstm=maybe",
    ],
)
def test_wrong_type_fails_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        make_cfg(override)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.units=-3", "model.units"),
        ("model.units=0", "model.units"),
        ("model.num_layers=0", "model.num_layers"),
        ("model.dropout=1.0", "model.dropout"),
        ("model.dropout=-0.1", "model.dropout"),
        ("model.cell=transformer", "model.cell"),
        ("trainer.learning_rate=0", "trainer.learning_rate"),
        ("trainer.epochs=0", "trainer.epochs"),
        ("data.batch_size=0", "data.batch_size"),
        ("data.eval_batch_size=0", "data.eval_batch_size"),
        ("data.val_fraction=1.5", "data.val_fraction"),
        ("tracking.system_metrics_interval=0", "tracking.system_metrics_interval"),
        ("trainer.batch_splits=0", "trainer.batch_splits"),
        ("trainer=smoke trainer.batch_splits=2", "trainer.batch_splits"),  # smoke has no XLA
    ],
)
def test_out_of_range_names_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"`{key}`.*expected .*got"):
        validate(make_cfg(*override.split()))


@pytest.mark.parametrize(
    ("overrides", "key"),
    [(["data=csv"], "data.path"), (["data=csv", "data.path=x.csv"], "data.target")],
)
def test_missing_required_value_is_named_with_its_fix(overrides, key):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    message = str(err.value)
    assert f"needs a value for `{key}`" in message and f"`{key}=...`" in message
    assert "\n" not in message  # one paragraph: OmegaConf's full_key/object_type lines dropped


def test_broken_interpolation_is_named_in_one_paragraph():
    with pytest.raises(ConfigError) as err:
        validate(make_cfg("model.units=${nope}"))
    message = str(err.value)
    assert "invalid at `model.units`" in message and "'nope' not found" in message
    assert "\n" not in message


def test_experiment_presets_override_groups():
    cfg = make_cfg("experiment=sine_simple_rnn")
    assert cfg.data.name == "sine" and cfg.model.cell == "simple_rnn"
    assert cfg.model.units == 100 and cfg.model.activation == "relu"
    assert OmegaConf.select(cfg, "data.length") == 300
