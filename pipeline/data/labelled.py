"""Labelled sequences of any length, from any source (`.ts` pairs, long-format tables): padded at
the end to one length and masked, scaled per channel inside the model, split stratified."""

from __future__ import annotations

import numpy as np

from pipeline.config.errors import DataError
from pipeline.data.buckets import bucket_bounds, bucketed_pipeline, padding_share
from pipeline.data.datasets import Datasets, DataSpec, build_datasets

# What padded steps hold. Keras' Masking masks a step whose every channel equals it; a value
# no measurement holds exactly, so that a real all-zero step (common after z-normalisation) is
# not mistaken for padding as it would be with the usual 0.0.
PAD_VALUE = -1e4


def pad(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """(n, length, channels) float32, each sequence truncated or padded at the end."""
    out = np.full((len(sequences), length, sequences[0].shape[1]), PAD_VALUE, dtype=np.float32)
    for i, s in enumerate(sequences):
        out[i, : min(len(s), length)] = s[:length]
    return out


def stratified_split(labels: np.ndarray, share: float, seed: int, groups=None, what="sequences"):
    """Indices (kept, held out): `share` of each class held out, seeded. With `groups`, whole
    groups go to one side (stratified as far as the groups allow). `what` names the examples
    in the error."""
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    index = np.arange(len(labels))
    try:
        if groups is None:
            return train_test_split(index, test_size=share, stratify=labels, random_state=seed)
        folds = StratifiedGroupKFold(max(2, round(1 / share)), shuffle=True, random_state=seed)
        return next(folds.split(index, labels, groups))
    except ValueError as exc:
        raise DataError(
            f"The {what} cannot be split stratified with a held-out share of {share:.3g} "
            f"({exc}). Every class needs at least two {what}"
            + (" (and groups, with `data.group`)" if groups is not None else "")
            + f" so that each side gets one: add {what} or change `data.val_fraction` / "
            "`data.test_fraction`."
        ) from None


def length_buckets(steps: dict, cfg, seed: int):
    """`data.bucket_by_length`: build_datasets' `batches` for pipelines bucketed by length
    (bounds from the training lengths), and the run's tags saying what they pad. `steps` holds
    each split's lengths as padded arrays hold them (cut to the padded length)."""
    bounds = bucket_bounds(steps["train"], cfg.batch_size)

    def batches(split, x, y, batch_size, shuffle):
        options = dict(shuffle=shuffle, seed=seed, cache=cfg.cache)
        return bucketed_pipeline(x, steps[split], y, batch_size, bounds, **options)

    tags = {
        "data.length_buckets": ",".join(map(str, bounds)),
        # Exact for the batches built: each sequence is padded to its bucket's bound, whichever
        # batch it lands in.
        "data.padding_share_bucketed": f"{padding_share(steps['train'], bounds):.3f}",
    }
    return batches, tags


def long_table(sequences: list[np.ndarray], ids, layout: dict):
    """Sequences as the logged model takes them: one row per step, the id column (and the order
    column, 0, 1, ...) then the feature columns, as in `layout`."""
    import pandas as pd

    parts = []
    for sid, seq in zip(ids, sequences, strict=True):
        part = pd.DataFrame(seq, columns=layout["features"])
        if layout["order"]:
            part.insert(0, layout["order"], np.arange(len(seq)))
        part.insert(0, layout["id"], sid)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def labelled_datasets(
    splits: dict, classes: list[str], cfg, seed: int, source: dict, layout: dict
) -> Datasets:
    """Datasets from {split: (list of (steps, channels) arrays, string labels, ids)}; `classes`,
    the sorted label names, has at least two (the loaders say which file has only one);
    `layout` names the id, order and feature columns a raw input table has."""
    ids = {split: np.asarray(part[2]) for split, part in splits.items()}
    splits = {split: part[:2] for split, part in splits.items()}
    for split, (seqs, _) in splits.items():
        if len(seqs) == 0:
            raise DataError(
                f"The {split} split is empty. Add sequences or change the split fractions."
            )
    every = [s for seqs, _ in splits.values() for s in seqs]
    channels = {s.shape[1] for s in every}
    if len(channels) > 1:
        raise DataError(
            f"The sequences have different numbers of channels ({sorted(channels)}). Every "
            "sequence needs the same channels."
        )
    lengths = np.array([len(s) for s in every])
    length = int(lengths.max()) if cfg.max_length is None else cfg.max_length
    truncated = int((lengths > length).sum())
    to_int = {c: i for i, c in enumerate(classes)}
    arrays = {
        split: (pad(seqs, length), np.array([to_int[v] for v in labels], dtype=np.int32))
        for split, (seqs, labels) in splits.items()
    }
    # Per-channel statistics of the real training steps only (padding excluded), for the
    # model's own Normalization layer, so the logged model takes raw values.
    steps = np.concatenate([s[:length] for s in splits["train"][0]])
    variable = bool(lengths.min() != lengths.max()) or truncated > 0
    bucketed = cfg.bucket_by_length and variable  # equal lengths: nothing to bucket
    padded = sum(int((x == PAD_VALUE).all(axis=-1).sum()) for x, _ in arrays.values())
    total = sum(x.shape[0] * x.shape[1] for x, _ in arrays.values())
    spec = DataSpec(
        # Bucketed batches differ in length, so the model takes any number of steps.
        input_shape=(None if bucketed else length, int(channels.pop())),
        task="classification",
        output_size=len(classes),
        mask_value=PAD_VALUE if variable else None,
        channel_mean=tuple(steps.mean(axis=0).tolist()) if cfg.normalize else None,
        channel_variance=tuple(steps.var(axis=0).tolist()) if cfg.normalize else None,
    )
    tags = {
        "data.length_min": str(int(lengths.min())),
        "data.length_max": str(int(lengths.max())),
        "data.padded_length": str(length),
        "data.truncated_sequences": str(truncated),
        "data.padding_share": f"{padded / total:.3f}",
        "data.classes": ",".join(classes)[:500],
    }
    serving = {
        "kind": "sequences",
        **layout,
        "length": length,
        "bucketed": bucketed,
        "pad_value": PAD_VALUE if variable else None,
    }
    extra = {
        "serving": serving,
        "example": long_table(splits["train"][0][:2], ids["train"][:2], layout),
        "test_ids": ids["test"],
    }
    if bucketed:
        steps = {
            split: np.minimum([len(s) for s in seqs], length) for split, (seqs, _) in splits.items()
        }
        extra["batches"], bucket_tags = length_buckets(steps, cfg, seed)
        tags.update(bucket_tags)
    return build_datasets(
        arrays, spec, cfg, seed, source=source, class_names=classes, tags=tags, **extra
    )
