"""Labelled sequences in the UEA/UCR `.ts` format: aeon's shipped datasets, a user's pair of
unequal-length multivariate files, masking of the padding, and bad files refused early."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_cfg, runs_in

from pipeline.config import DataError, validate
from pipeline.data import make_datasets
from pipeline.data.labelled import PAD_VALUE

HEADER = """@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down flat
@data
"""


def toy_rows(n: int, seed: int) -> str:
    """n two-channel sequences of 4-9 steps whose label is the trend of channel 0."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = ("up", "down", "flat")[i % 3]
        slope = {"up": 1.0, "down": -1.0, "flat": 0.0}[label]
        steps = rng.integers(4, 10)
        a = slope * np.arange(steps) + rng.normal(0, 0.1, steps)
        b = rng.normal(0, 1, steps)
        rows.append(",".join(f"{v:.3f}" for v in a) + ":" + ",".join(f"{v:.3f}" for v in b))
        rows[-1] += f":{label}"
    return "\n".join(rows) + "\n"


@pytest.fixture
def ts_pair(tmp_path):
    (tmp_path / "Toy_TRAIN.ts").write_text(HEADER + toy_rows(30, 0))
    (tmp_path / "Toy_TEST.ts").write_text(HEADER + toy_rows(12, 1))
    return tmp_path / "Toy_TRAIN.ts"


def uea(*overrides):
    return validate(make_cfg("data=uea", *overrides)).data


def test_shipped_dataset_loads_offline_with_a_stratified_validation_share():
    data = make_datasets(uea("data.name=JapaneseVowels"), seed=0)
    assert data.sizes == {"train": 216, "val": 54, "test": 370}  # 270 train, 20% held out
    assert data.spec.input_shape == (29, 12) and data.spec.output_size == 9
    assert data.class_names == [str(i) for i in range(1, 10)]
    val_counts = np.bincount(data.arrays["val"][1], minlength=9)
    assert val_counts.min() >= 5 and val_counts.max() <= 7  # 30 per class, 20% each
    assert data.spec.mask_value == PAD_VALUE  # lengths 7-29: padded and masked
    assert data.tags["data.length_min"] == "7" and data.tags["data.length_max"] == "29"
    # Per-channel statistics from real training steps only: padding would drag the mean down.
    steps = data.arrays["train"][0].reshape(-1, 12)
    real = steps[~(steps == PAD_VALUE).all(axis=1)]
    np.testing.assert_allclose(data.spec.channel_mean, real.mean(axis=0), rtol=1e-4, atol=1e-5)


def test_users_unequal_multivariate_pair_with_string_labels(ts_pair):
    data = make_datasets(uea(f"data.path={ts_pair}", "data.max_length=7"), seed=0)
    assert data.class_names == ["down", "flat", "up"]
    assert data.spec.input_shape == (7, 2)
    assert int(data.tags["data.truncated_sequences"]) > 0  # some had 8-9 steps
    x, _ = data.arrays["train"]
    assert ((x == PAD_VALUE).all(axis=-1)).any()  # the short ones are padded at the end
    padded = (x == PAD_VALUE).all(axis=-1)
    assert not (padded[:, :-1] & ~padded[:, 1:]).any()  # padding only at the end


def test_padding_does_not_change_the_outputs():
    import keras

    from pipeline.data import DataSpec
    from pipeline.models import build_model

    model_cfg = validate(make_cfg("model=gru", "model.units=4")).model
    short = DataSpec((5, 2), "classification", 3, mask_value=PAD_VALUE)
    long = DataSpec((12, 2), "classification", 3, mask_value=PAD_VALUE)
    a, b = build_model(model_cfg, short), build_model(model_cfg, long)
    b.set_weights(a.get_weights())
    x = np.random.default_rng(0).normal(size=(3, 5, 2)).astype("float32")
    padded = np.concatenate([x, np.full((3, 7, 2), PAD_VALUE, "float32")], axis=1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(a(x)), keras.ops.convert_to_numpy(b(padded)), atol=1e-5
    )


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_uea_run_logs_class_scores_names_and_padding(store, ts_pair):
    from pipeline.train import train

    metrics = train(make_cfg("data=uea", f"data.path={ts_pair}", "data.name=Toy", "trainer=smoke"))
    assert 0.0 <= metrics["test_f1_macro"] <= 1.0 and 0.0 <= metrics["test_balanced_accuracy"] <= 1
    [run] = runs_in(store)
    assert run.info.status == "FINISHED"
    assert run.data.tags["data"] == "Toy" and run.data.tags["data.classes"] == "down,flat,up"
    assert 0.0 < float(run.data.tags["data.padding_share"]) < 1.0
    assert "final_val_f1_macro" in run.data.metrics
    assert "scale" in [layer.name for layer in _logged_layers(run)]


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_without_a_validation_split_every_training_sequence_trains(store, ts_pair):
    from pipeline.train import train

    data = make_datasets(uea(f"data.path={ts_pair}", "data.val_fraction=0"), seed=0)
    assert data.val is None and data.sizes == {"train": 30, "test": 12}
    overrides = ("data=uea", f"data.path={ts_pair}", "data.name=Toy", "data.val_fraction=0")
    metrics = train(make_cfg(*overrides, "trainer=smoke", "trainer.early_stopping_patience=3"))
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and "test_f1_macro" in metrics
    assert not [k for k in metrics if k.startswith("val_")]
    [run] = runs_in(store)
    assert run.info.status == "FINISHED"
    assert not [k for k in run.data.metrics if "val_" in k]
    inputs = [d.dataset.name for d in run.inputs.dataset_inputs]
    assert sorted(inputs) == ["Toy-test", "Toy-train"]


@pytest.mark.parametrize(
    "override, match",
    [
        ("trainer.monitor=val_loss", r"trainer.monitor=val_loss.*trainer.monitor=loss"),
        ("optimized_metric=val_accuracy", r"optimized_metric=val_accuracy.*val_fraction"),
    ],
)
def test_watching_a_missing_validation_split_is_refused_before_a_run(
    store, ts_pair, override, match
):
    from pipeline.config import ConfigError
    from pipeline.train import train

    cfg = make_cfg("data=uea", f"data.path={ts_pair}", "data.val_fraction=0", override)
    with pytest.raises(ConfigError, match=match):
        train(cfg)
    assert runs_in(store) == []


def _logged_layers(run):
    import keras
    import mlflow

    path = mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/checkpoints/best.keras")
    return keras.saving.load_model(path).layers  # the model as trained


@pytest.mark.parametrize(
    "train_text, match",
    [
        ("@problemName X\n@classLabel true a b\n@data\n1,x,2:a\n", "could not be read"),
        ("@problemName X\n@classLabel true a b\n1,2:a\n", "no labelled sequences"),
        (HEADER + "1,2,3:1,2,3:up\n2,3,4:1,1,1:up\n", "single class"),
        (HEADER + "1,2,3:1,2,3:up\n2,3,4:1,1,1:down\n1,1,1:1,1,1:flat\n", "stratified"),
    ],
    ids=["not a number", "no @data", "one class", "too few to stratify"],
)
def test_bad_ts_files_are_explained(tmp_path, train_text, match):
    (tmp_path / "Bad_TRAIN.ts").write_text(train_text)
    (tmp_path / "Bad_TEST.ts").write_text(HEADER + toy_rows(6, 2))
    with pytest.raises(DataError, match=match):
        make_datasets(uea(f"data.path={tmp_path / 'Bad_TRAIN.ts'}"), seed=0)


def test_missing_pair_and_unknown_name_are_explained(tmp_path):
    (tmp_path / "Only_TRAIN.ts").write_text(HEADER + toy_rows(6, 0))
    with pytest.raises(DataError, match="Only_TEST.ts"):
        make_datasets(uea(f"data.path={tmp_path / 'Only_TRAIN.ts'}"), seed=0)
    with pytest.raises(DataError, match="not one of the UEA/UCR datasets aeon ships"):
        make_datasets(uea("data.name=NoSuchData"), seed=0)


def test_a_sweep_needs_a_validation_split(ts_pair):
    from pipeline.config import ConfigError
    from pipeline.sweeps.runner import objective

    cfg = make_cfg("data=uea", f"data.path={ts_pair}", "data.val_fraction=0")
    match = "A sweep compares its trials on the validation split"
    with pytest.raises(ConfigError, match=match):  # the sweeper, before it opens anything
        objective(cfg)
    assert objective(make_cfg("data=uea", f"data.path={ts_pair}")) == ("val_accuracy", "maximize")
