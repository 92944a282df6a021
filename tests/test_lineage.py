"""Data lineage: content digests that follow the data, and splits logged as dataset inputs."""

from __future__ import annotations

import json

import numpy as np
from conftest import make_cfg

from pipeline.config import validate
from pipeline.data import make_datasets
from pipeline.tracking import lineage
from pipeline.tracking.runs import open_run


def csv_data(path, values):
    path.write_text("t,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    conf = validate(make_cfg("data=csv", f"data.path={path}", "data.target=value", "data.window=4"))
    return make_datasets(conf.data, conf.seed)


def test_digest_is_stable_and_sees_every_value():
    x = np.arange(30_000, dtype=np.float32).reshape(1000, 30, 1)
    y = np.arange(1000)
    digest = lineage.content_digest(x, y)
    assert digest == lineage.content_digest(x.copy(), y.copy())
    assert len(digest) == lineage.DIGEST_CHARS
    changed = x.copy()
    changed[-1, -1, 0] += 1  # past the 10,000 values MLflow's own digest looks at
    assert lineage.content_digest(changed, y) != digest
    assert lineage.content_digest(x.astype(np.float64), y) != digest


def test_same_csv_same_digest_changed_csv_different(tmp_path):
    values = np.sin(np.arange(200) / 5).round(4)

    def digests(data):
        return [lineage.content_digest(*data.arrays[split]) for split in ("train", "val", "test")]

    data = csv_data(tmp_path / "a.csv", values)
    first, again = digests(data), digests(csv_data(tmp_path / "a.csv", values))
    values[-1] += 1  # a single changed reading at the end: only the test split changes
    changed = digests(csv_data(tmp_path / "a.csv", values))
    assert first == again
    assert changed[:2] == first[:2] and changed[2] != first[2]
    source = lineage.source_tags(data.source)
    assert source["loader"] == "csv" and len(source["file_sha256"]) == 64
    assert json.loads(source["args"])["path"] == str((tmp_path / "a.csv").resolve())


def test_splits_logged_as_run_inputs(store):
    import mlflow

    conf = validate(make_cfg("data=sine"))
    data = make_datasets(conf.data, conf.seed)
    with open_run(store, "lineage", "r", {}, system_metrics=False) as run:
        lineage.log_datasets(data, "sine")
    inputs = mlflow.MlflowClient(store).get_run(run.info.run_id).inputs.dataset_inputs
    by_split = {{t.key: t.value for t in i.tags}["mlflow.data.context"]: i for i in inputs}
    assert set(by_split) == {"train", "val", "test"}
    train = by_split["train"]
    assert train.dataset.name == "sine-train" and train.dataset.source_type == "code"
    assert {t.key: t.value for t in train.tags}["num_examples"] == str(data.sizes["train"])
    assert train.dataset.digest == lineage.content_digest(*data.arrays["train"])
    profile = json.loads(train.dataset.profile)
    assert profile["features_shape"] == list(data.arrays["train"][0].shape)
    assert "numpy.sin" in train.dataset.source
