"""Ingestion stage: shapes, seeded shuffling, caching, chronological splits and bad files."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_cfg

from pipeline.config import DataError, validate
from pipeline.data import make_datasets


def data_conf(*overrides):
    return validate(make_cfg(*overrides)).data


def first_batch(ds):
    x, y = next(iter(ds))
    return x.numpy(), y.numpy()


def test_mnist1d_shapes_and_spec():
    data = make_datasets(data_conf(), seed=0)
    assert data.sizes == {"train": 3600, "val": 400, "test": 1000}
    assert data.spec.input_shape == (40, 1) and data.spec.task == "classification"
    assert data.spec.output_size == 10
    x, y = first_batch(data.train)
    assert x.shape == (64, 40, 1) and x.dtype == np.float32 and set(np.unique(y)) <= set(range(10))
    # Validation and test go in batches of 4 x 64 unless data.eval_batch_size says otherwise.
    assert [len(x) for x, _ in data.val] == [256, 144]
    sized = make_datasets(data_conf("data.eval_batch_size=1000"), seed=0)
    assert [len(x) for x, _ in sized.test] == [1000] and len(first_batch(sized.train)[0]) == 64


def test_mnist1d_is_cached_on_disk(data_cache, monkeypatch):
    cfg = data_conf()
    make_datasets(cfg, seed=0)
    assert list(data_cache.glob("mnist1d-*.npz"))

    def fail(*_a, **_k):
        raise AssertionError("regenerated although the cache file exists")

    monkeypatch.setattr("mnist1d.data.make_dataset", fail)
    again = make_datasets(cfg, seed=0)
    assert again.sizes["train"] == 3600


def test_shuffle_is_seeded():
    cfg = data_conf()
    a, _ = first_batch(make_datasets(cfg, seed=1).train)
    b, _ = first_batch(make_datasets(cfg, seed=1).train)
    c, _ = first_batch(make_datasets(cfg, seed=2).train)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_eval_splits_are_not_shuffled():
    data = make_datasets(data_conf(), seed=3)
    x, _ = first_batch(data.test)
    np.testing.assert_array_equal(x, data.arrays["test"][0][: len(x)])


def write_csv(path, n, extra=None):
    lines = ["t,value,other"] + [f"{i},{i},{2 * i}" for i in range(n)]
    path.write_text("\n".join(lines + (extra or [])) + "\n")
    return path


def test_chronological_split_has_no_leakage(tmp_path):
    path = write_csv(tmp_path / "s.csv", 200)
    data = make_datasets(
        data_conf(
            "data=csv",
            f"data.path={path}",
            "data.target=value",
            "data.scale=false",
            "data.window=5",
            "data.horizon=2",
        ),
        seed=0,
    )
    (xtr, ytr), (xva, yva), (xte, yte) = (data.arrays[s] for s in ("train", "val", "test"))
    assert xtr.shape[1:] == (5, 1) and ytr.shape[1:] == (2,)
    # Values equal row numbers: every target of a later split is later than all earlier ones.
    assert ytr.max() < yva.min() and yva.max() < yte.min()
    # Training inputs never see a row that is a validation or test target.
    assert xtr.max() < yva.min()
    # Each window's target follows its inputs.
    np.testing.assert_array_equal(ytr[:, 0], xtr[:, -1, 0] + 1)


def test_scaling_uses_training_rows_only(tmp_path):
    path = write_csv(tmp_path / "s.csv", 100)
    data = make_datasets(
        data_conf(
            "data=csv",
            f"data.path={path}",
            "data.target=value",
            "data.features=[other]",
            "data.val_fraction=0.2",
            "data.test_fraction=0.2",
            "data.window=3",
        ),
        seed=0,
    )
    # Train rows are 0..59: mean 29.5, std ~17.3; the test rows lie far above the train range.
    assert data.scaler["mean"] == pytest.approx(29.5)
    assert data.scaler["std"] == pytest.approx(np.arange(60).std())
    assert data.arrays["test"][1].min() > data.arrays["train"][1].max()
    assert data.spec.input_shape == (3, 2)


def test_sequence_targets_are_the_shifted_window(tmp_path):
    path = write_csv(tmp_path / "s.csv", 80)
    data = make_datasets(
        data_conf(
            "data=csv",
            f"data.path={path}",
            "data.target=value",
            "data.scale=false",
            "data.window=6",
            "data.target_mode=sequence",
        ),
        seed=0,
    )
    x, y = data.arrays["train"]
    assert y.shape[1:] == (6, 1) and data.spec.sequence_output
    np.testing.assert_array_equal(y[:, :, 0], x[:, :, 0] + 1)


def test_sine_and_sunspots():
    sine = make_datasets(data_conf("data=sine"), seed=0)
    assert sine.spec.input_shape == (20, 1) and sine.spec.task == "regression"
    assert sum(sine.sizes.values()) == 1000 - 20
    spots = make_datasets(data_conf("data=sunspots"), seed=0)
    assert spots.source["loader"].startswith("statsmodels")
    assert spots.sizes["test"] == round(309 * 0.15)
    # Train-only scaling: the training targets are standardised, the others are not exactly.
    assert abs(spots.arrays["train"][1].mean()) < 0.1


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("t,value\n", "no rows"),
        ("t,value\n0,1\n1,abc\n2,3\n", "non-numeric.*abc"),
        ("t,value\n0,1\n1,\n2,3\n", "missing value"),
        ("t,price\n0,1\n1,2\n", "not found.*price"),
        ("t,value\n" + "".join(f"{i},{i}\n" for i in range(12)), "too few"),
    ],
)
def test_bad_csv_is_explained(tmp_path, content, match):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=match):
        make_datasets(data_conf("data=csv", f"data.path={path}", "data.target=value"), seed=0)


def test_tfds_mnist_rows_with_mock_data(tfds_mock):
    with tfds_mock(num_examples=40):
        data = make_datasets(data_conf("data=fashion_mnist", "data.batch_size=8"), seed=0)
    assert data.spec.input_shape == (28, 28) and data.spec.output_size == 10
    assert data.sizes == {"train": 36, "val": 4, "test": 40}
    x, y = first_batch(data.train)
    assert x.shape == (8, 28, 28) and x.dtype == np.float32
    # Raw pixels in the pipeline, scaled to [0, 1] by the model's first layer, so the logged
    # model takes raw images too.
    assert 0.0 <= x.min() and x.max() <= 255.0 and data.spec.input_scale == pytest.approx(1 / 255)
    assert len(data.class_names) == 10 and data.serving["input_shape"] == [28, 28]


def test_tfds_offline_error_names_dataset_and_alternative(tmp_path):
    with pytest.raises(DataError, match=r"`mnist`.*data_dir.*data=mnist1d"):
        make_datasets(
            data_conf("data=mnist", f"data.data_dir={tmp_path}", "data.download=false"), 0
        )
