"""`data.bucket_by_length`: the same examples as with one global length, each batch padded at
the end only to its length bucket's bound, the padding tags, and a run whose logged model takes
sequences of any length."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import make_cfg, runs_in

from pipeline.config import validate
from pipeline.data import make_datasets
from pipeline.data.buckets import bucket_bounds, padding_share
from pipeline.data.labelled import PAD_VALUE

JAPANESE_VOWELS = ("data=uea", "data.name=JapaneseVowels")


@pytest.fixture(scope="module")
def both():
    """JapaneseVowels (lengths 7-29) with one global length and bucketed, seed 0."""

    def load(bucketed: bool):
        flag = f"data.bucket_by_length={str(bucketed).lower()}"
        return make_datasets(validate(make_cfg(*JAPANESE_VOWELS, flag)).data, seed=0)

    return load(False), load(True)


def steps(x: np.ndarray) -> np.ndarray:
    """Real steps of each padded sequence (padding holds PAD_VALUE in every channel)."""
    return (~(x == PAD_VALUE).all(axis=-1)).sum(axis=1)


def examples(pipeline) -> list[tuple[bytes, int]]:
    """(the sequence's real steps as bytes, label) of every example, in the pipeline's order."""
    out = []
    for x, y in pipeline:
        x, y = np.asarray(x), np.asarray(y)
        out += [(s[:n].tobytes(), int(label)) for s, n, label in zip(x, steps(x), y, strict=True)]
    return out


def test_bucketed_pipelines_yield_the_same_examples(both):
    flat, bucketed = both
    assert flat.spec.input_shape == (29, 12) and bucketed.spec.input_shape == (None, 12)
    for split in ("train", "val", "test"):
        a, b = examples(getattr(flat, split)), examples(getattr(bucketed, split))
        assert len(a) == len(b) == flat.sizes[split]
        assert Counter(a) == Counter(b), split
    # Not a copy of the global pipeline: some batches are shorter than the longest sequence.
    assert min(np.asarray(x).shape[1] for x, _ in bucketed.train) < 29


def test_each_batch_is_padded_at_the_end_to_its_bucket_bound_only(both):
    _, data = both
    bounds = [int(b) for b in data.tags["data.length_buckets"].split(",")]
    longest = int(steps(data.arrays["train"][0]).max())  # 26: the 29-step one is in test
    assert bounds == sorted(bounds) and bounds[-1] == longest and len(bounds) > 1
    shapes = set()
    for x, _ in data.train:
        x = np.asarray(x)
        shapes.add(x.shape)
        n = steps(x)
        bound = bounds[np.searchsorted(bounds, n.max())]
        assert x.shape[1] == bound  # padded to the bound of its longest member's bucket ...
        lower = bounds[bounds.index(bound) - 1] if bound != bounds[0] else 0
        assert (n > lower).all()  # ... and every member belongs to that bucket
        padded = (x == PAD_VALUE).all(axis=-1)
        assert (padded == (np.arange(x.shape[1]) >= n[:, None])).all()  # only at the end
    # A full batch and a last, smaller one per bucket at most: few XLA compilations.
    assert len(shapes) <= 2 * len(bounds)


def test_padding_tags_say_both_shares(both):
    flat, data = both
    assert "data.padding_share_bucketed" not in flat.tags
    built = [np.asarray(x) for x, _ in data.train]
    counted = 1 - sum(steps(x).sum() for x in built) / sum(x.shape[0] * x.shape[1] for x in built)
    tagged = float(data.tags["data.padding_share_bucketed"])
    assert tagged == pytest.approx(counted, abs=5e-4)
    assert tagged < float(data.tags["data.padding_share"]) / 4  # 0.463 with one length


def test_shuffling_is_seeded_and_new_every_epoch():
    cfg = validate(make_cfg(*JAPANESE_VOWELS, "data.bucket_by_length=true")).data
    data, again = make_datasets(cfg, seed=0), make_datasets(cfg, seed=0)
    first = examples(data.train)
    assert examples(again.train) == first  # seeded
    assert examples(data.train) != first  # reshuffled for the next epoch
    # Keras sizes each epoch from the pipeline (else it warns that the input ran out).
    assert int(data.train.cardinality()) == sum(1 for _ in data.train)


def test_bounds_leave_the_fewest_padded_steps_with_a_batch_per_bucket():
    lengths = np.array([3] * 10 + [4] * 10 + [10] * 10)
    assert bucket_bounds(lengths, batch_size=5, max_buckets=2) == [4, 10]
    assert bucket_bounds(lengths, batch_size=5, max_buckets=3) == [3, 4, 10]
    assert bucket_bounds(lengths, batch_size=15, max_buckets=3) == [10]  # 20 + 10: one bucket
    assert bucket_bounds(np.array([2, 9]), batch_size=16) == [9]  # fewer than a batch
    assert padding_share(lengths, [4, 10]) == pytest.approx(1 - 170 / 180)


def test_predictions_and_targets_stay_paired_in_bucketed_order(both):
    from pipeline.models import build_model
    from pipeline.tracking.pictures import predict_with_targets

    flat, data = both
    model = build_model(validate(make_cfg("model=gru", "model.units=4")).model, data.spec)
    expected, targets = predict_with_targets(model, flat.val)  # the split's arrays' order
    assert (targets == flat.arrays["val"][1]).all()
    outputs, labels = predict_with_targets(model, data.val)
    where = {key: i for i, (key, _) in enumerate(examples(flat.val))}
    order = [where[key] for key, _ in examples(data.val)]
    assert order != sorted(order)  # bucketing did reorder
    assert (labels == targets[order]).all()
    np.testing.assert_allclose(outputs, expected[order], atol=1e-5)


@pytest.mark.slow  # an end-to-end run
def test_bucketed_run_logs_a_model_that_takes_any_length(store, tmp_path):
    import mlflow

    from pipeline.train import train

    overrides = ("data.bucket_by_length=true", "trainer=smoke", "model.units=8")
    metrics = train(make_cfg(*JAPANESE_VOWELS, *overrides), tmp_path)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and "test_f1_macro" in metrics
    [run] = runs_in(store)
    assert run.info.status == "FINISHED"
    assert float(run.data.tags["data.padding_share_bucketed"]) < float(
        run.data.tags["data.padding_share"]
    )
    from pipeline.data.labelled import long_table
    from pipeline.data.uea import ts_layout

    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    rng = np.random.default_rng(0)
    for length in (9, 25):  # raw values, one row per step: the model scales and pads them itself
        sequences = list(rng.normal(size=(3, length, 12)))
        out = model.predict(long_table(sequences, [0, 1, 2], ts_layout(12)))
        probabilities = out.filter(like="p_").to_numpy()
        assert out.case.tolist() == [0, 1, 2] and probabilities.shape == (3, 9)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
