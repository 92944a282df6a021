"""A user's labelled sequences in a long-format table: splits by id (and group), stratified;
one label per id; bad tables refused before a run opens."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_cfg, runs_in

from pipeline.config import DataError, validate
from pipeline.data import make_datasets
from pipeline.data.labelled import PAD_VALUE


def long_table(n_ids: int = 40, seed: int = 0, subjects: int = 4) -> pd.DataFrame:
    """Sequences of 3-8 steps, shuffled rows, a `t` column giving the order, `who` the subject."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_ids):
        label = ("walk", "run")[i % 2]
        for t in range(int(rng.integers(3, 9))):
            speed = (1.0 if label == "walk" else 3.0) + rng.normal(0, 0.2)
            rows.append(
                dict(rec=f"r{i}", t=t, speed=speed, tilt=rng.normal(), act=label, who=i % subjects)
            )
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed)  # steps out of order


def seqs(path, *overrides):
    args = ["data=sequences", f"data.path={path}", "data.id=rec", "data.label=act", *overrides]
    return validate(make_cfg(*args)).data


def test_splits_are_by_id_stratified_and_ordered(tmp_path):
    path = tmp_path / "steps.parquet"
    table = long_table()
    table.to_parquet(path)
    data = make_datasets(seqs(path, "data.order=t", "data.features=[speed,tilt]"), seed=0)
    assert sum(data.sizes.values()) == 40 and data.class_names == ["run", "walk"]
    for split in ("val", "test"):
        assert set(data.arrays[split][1]) == {0, 1}  # both classes in every split
    # Steps are in `t` order: r0's first step is its t=0 row.
    first = table[(table.rec == "r0") & (table.t == 0)][["speed", "tilt"]].to_numpy()
    x = np.concatenate([a for a, _ in data.arrays.values()])
    assert np.isclose(x[:, 0], first.astype("float32")).all(axis=1).any()


def test_group_keeps_each_subject_in_one_split(tmp_path):
    path = tmp_path / "steps.csv"
    table = long_table(96, subjects=16)
    table["subject"] = table.who.astype(float)  # a feature that shows which subject a step is
    table.to_csv(path, index=False)
    cfg = seqs(path, "data.order=t", "data.group=who", "data.features=[speed,subject]")
    data = make_datasets(cfg, seed=1)
    subjects = {}
    for split, (x, _) in data.arrays.items():
        real = x[~(x == PAD_VALUE).all(axis=-1)]
        subjects[split] = set(real[:, 1].tolist())
    assert not subjects["train"] & subjects["test"] and not subjects["val"] & subjects["test"]
    assert not subjects["train"] & subjects["val"]


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_sequences_train_end_to_end(store, tmp_path):
    from pipeline.train import train

    path = tmp_path / "steps.csv"
    long_table().to_csv(path, index=False)
    metrics = train(
        make_cfg(
            "data=sequences",
            f"data.path={path}",
            "data.id=rec",
            "data.label=act",
            "data.order=t",
            "trainer=smoke",
        )
    )
    assert "test_f1_macro" in metrics
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and run.data.tags["data.classes"] == "run,walk"


def test_bad_tables_are_explained(tmp_path):
    path = tmp_path / "steps.csv"
    table = long_table()
    table.loc[table.rec == "r3", "act"] = ["walk", "run"] * (
        int((table.rec == "r3").sum()) // 2
    ) + (["walk"] if (table.rec == "r3").sum() % 2 else [])
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match="r3 .* different labels"):
        make_datasets(seqs(path), seed=0)
    table = long_table()
    table["act"] = "walk"
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match="single class"):
        make_datasets(seqs(path), seed=0)
    table = long_table()
    table["tilt"] = "high"
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match="must hold numbers"):
        make_datasets(seqs(path, "data.features=[speed,tilt]"), seed=0)
    with pytest.raises(DataError, match="not found"):
        make_datasets(seqs(path, "data.features=[sped]"), seed=0)
    long_table(4).to_csv(path, index=False)  # 2 per class: no room for val and test
    with pytest.raises(DataError, match="stratified|empty"):
        make_datasets(seqs(path), seed=0)
