"""Composition of every option of every group, and the schema's refusals."""

from __future__ import annotations

import pytest
from conftest import make_cfg
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from pipeline.config import CONF_DIR, ConfigError, validate

GROUP_OPTIONS = [
    (group.name, path.stem)
    for group in sorted(CONF_DIR.iterdir())
    if group.is_dir()
    for path in sorted(group.glob("*.yaml"))
]
EXTRA = {
    ("data", "csv"): ["data.path=x.csv", "data.target=value"],
    ("data", "sequences"): ["data.path=x.csv", "data.id=rec", "data.label=act"],
    ("data", "text"): ["data.path=x.csv"],
}


def leaves(tree, prefix=""):
    """(dotted key, value) of every leaf of a YAML file's mapping."""
    if not isinstance(tree, dict):
        yield prefix, tree
        return
    for key, value in tree.items():
        yield from leaves(value, f"{prefix}.{key}" if prefix else key)


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_option_composes_validates_and_sets_its_values(group, option):
    cfg = make_cfg(f"{group}={option}", *EXTRA.get((group, option), []))
    validate(cfg)
    written = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))
    written.pop("defaults", None)
    written.pop("hydra", None)  # the sweeper's settings: checked in test_sweeps
    packaged = "# @package _global_" in (CONF_DIR / group / f"{option}.yaml").read_text()
    prefix = "" if packaged else group
    for key, value in leaves(written, prefix):
        if value != "???":
            assert OmegaConf.select(cfg, key) == value, key


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
    [
        (["data=csv", "data.target=value"], "data.path"),
        (["data=csv", "data.path=x.csv"], "data.target"),
    ],
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


@pytest.mark.parametrize(
    ("override", "key", "hint"),
    [
        ("+modle=lstm", "modle", "Did you mean `model`?"),
        ("+model.unitz=4", "model.unitz", "Did you mean `units`?"),
        ("+data.batchsize=3", "data.batchsize", "Did you mean `batch_size`?"),
        ("++trainer.epoch=2", "trainer.epoch", "Did you mean `epochs`?"),
    ],
)
def test_keys_added_with_plus_are_refused_by_name(override, key, hint):
    """Hydra's `+` adds a key past the schema's checks (OmegaConf would keep a top-level one
    and silently drop a nested one): validate() names it instead."""
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(override))
    message = str(err.value)
    assert message.startswith(f"Unknown config key `{key}`.") and hint in message


def test_every_schema_field_gets_its_value_from_the_yaml():
    """Defaults are written once, in the YAML: the schema declares no value of its own."""
    from dataclasses import MISSING as NO_DEFAULT
    from dataclasses import fields

    from omegaconf import MISSING

    from pipeline.config import schema

    classes = [schema.Config, schema.ModelConfig, schema.TrainerConfig, schema.TrackingConfig]
    classes += [schema.SweepConfig, *schema.DATA_SCHEMAS.values()]
    with_values = [
        f"{cls.__name__}.{f.name}"
        for cls in classes
        for f in fields(cls)
        if f.default not in (MISSING, NO_DEFAULT) or f.default_factory is not NO_DEFAULT
    ]
    assert with_values == []
