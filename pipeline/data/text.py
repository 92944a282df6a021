"""Labelled texts, from any source (a user's file: text_files.py; TFDS' IMDB reviews: imdb.py):
tokenised by Keras' TextVectorization adapted on the training split only, each text a row of
token ids padded at the end with 0, the id Keras' `Embedding(mask_zero=True)` masks, so LSTM and
GRU keep the cuDNN kernel. Batches are bucketed by length (`data.bucket_by_length`).

The trained model reads token ids; the model a run logs puts the same TextVectorization (its
vocabulary, standardisation and n-grams) in front of it (pipeline.models.export), so it takes
raw strings. Tokenising here rather than inside the trained model keeps string ops out of the
training step (XLA compiles no string op) and gives the lengths that bucketing needs.
"""

from __future__ import annotations

import numpy as np

from pipeline.config.errors import DataError
from pipeline.data.datasets import Datasets, DataSpec, build_datasets
from pipeline.data.labelled import length_buckets

PADDING, OUT_OF_VOCABULARY = 0, 1  # TextVectorization's ids for padding and unknown tokens


def vectorizer(settings: dict, vocabulary=None, length: int | None = None):
    """The TextVectorization of `settings` (text_options: vocabulary_size, standardize, ngrams):
    ragged ids, to adapt on the training texts, when `vocabulary` is None; else with that
    vocabulary, each text padded or cut to `length` ids (as the logged model reads texts)."""
    from keras import layers

    options = dict(
        max_tokens=settings["vocabulary_size"],
        standardize=None if settings["standardize"] == "none" else settings["standardize"],
        ngrams=settings["ngrams"],
    )
    if vocabulary is None:
        return layers.TextVectorization(**options, ragged=True, name="tokens")
    return layers.TextVectorization(
        **options, vocabulary=vocabulary, output_sequence_length=length, name="tokens"
    )


def text_options(cfg) -> dict:
    """The settings that tokenise a text, as the logged model's config keeps them."""
    keys = ("vocabulary_size", "standardize", "ngrams")
    return {key: getattr(cfg, key) for key in keys}


def class_labels(values) -> np.ndarray:
    """Labels as the class names the model answers with: whole numbers without a decimal
    point (a numeric column read with a gap becomes floats), anything else as written."""
    import pandas as pd

    series = pd.Series(values)
    if pd.api.types.is_numeric_dtype(series) and (series == series.round()).all():
        return series.astype("int64").astype(str).to_numpy()
    return series.astype(str).to_numpy()


def text_datasets(splits: dict, cfg, seed: int, source: dict, layout: dict) -> Datasets:
    """Datasets from {split: (texts, string labels, ids)}; `layout` names the text and label
    columns a file for the logged model has. Raises DataError for a split without texts, a
    single class, or training texts holding no token."""
    import tensorflow as tf

    for split, (texts, _, _) in splits.items():
        if len(texts) == 0:
            raise DataError(f"The {split} split is empty. Add texts or change the split fractions.")
    classes = sorted(set(splits["train"][1]))
    if len(classes) < 2:
        raise DataError(
            f"The training texts have a single class ({classes[0]!r}): a classifier needs two "
            "or more. Check that `data.label` names the label column."
        )
    for split in ("val", "test"):
        unknown = sorted(set(splits[split][1]) - set(classes))
        if unknown:
            raise DataError(
                f"The {split} texts have label(s) {', '.join(unknown[:10])} that no training "
                f"text has (training has {', '.join(classes[:20])}). Every class needs training "
                "examples."
            )
    options = text_options(cfg)
    layer = vectorizer(options)
    # Adapted on the training texts alone: a word seen only in validation or test is unknown
    # to the model, as any new word will be.
    layer.adapt(tf.data.Dataset.from_tensor_slices(splits["train"][0]).batch(1024))
    vocabulary = [str(token) for token in layer.get_vocabulary()]
    if len(vocabulary) <= 2:  # the padding and out-of-vocabulary entries only
        raise DataError(
            "The training texts hold no words once standardised "
            f"(`data.standardize={cfg.standardize}`). Check that `data.text` names the text column."
        )
    ragged = {split: layer(texts) for split, (texts, _, _) in splits.items()}
    lengths = {split: r.row_lengths().numpy() for split, r in ragged.items()}
    # No wider than the longest training text: the model never reads more tokens than that.
    longest = max(1, int(lengths["train"].max()))
    length = min(cfg.max_length or longest, longest)
    to_int = {c: i for i, c in enumerate(classes)}
    arrays = {
        split: (
            # Cut at the end to `length` ids and padded at the end.
            ragged[split].to_tensor(PADDING, shape=[None, length]).numpy().astype(np.int32),
            np.array([to_int[v] for v in labels], dtype=np.int32),
        )
        for split, (_, labels, _) in splits.items()
    }
    # Lengths as the arrays hold them; a text of no known token keeps one (masked) step.
    steps = {split: np.clip(n, 1, length) for split, n in lengths.items()}
    variable = bool(steps["train"].min() != steps["train"].max())
    bucketed = cfg.bucket_by_length and variable
    spec = DataSpec(
        input_shape=(None if bucketed else length,),  # bucketed batches differ in length
        task="classification",
        output_size=len(classes),
        vocabulary_size=len(vocabulary),
    )
    tags = text_tags(arrays, lengths, length, vocabulary, classes)
    extra = {
        "serving": {"kind": "text", **layout, "length": length, **options},
        "example": [str(t) for t in splits["train"][0][:3]],
        "test_ids": np.asarray(splits["test"][2]),
        "vocabulary": vocabulary,
    }
    if bucketed:
        extra["batches"], bucket_tags = length_buckets(steps, cfg, seed)
        tags.update(bucket_tags)
    return build_datasets(
        arrays, spec, cfg, seed, source=source, class_names=classes, tags=tags, **extra
    )


def text_tags(arrays: dict, lengths: dict, length: int, vocabulary: list, classes: list) -> dict:
    """The run's facts about the texts: lengths in tokens, what is cut and padded, and the
    share of tokens the vocabulary does not know (of the training texts: those past
    `data.vocabulary_size`; of the test texts: new words too)."""

    def oov(split: str) -> float:
        ids = arrays[split][0]
        return float((ids == OUT_OF_VOCABULARY).sum() / max(int((ids != PADDING).sum()), 1))

    train = lengths["train"]
    kept = np.minimum(train, length)
    return {
        "data.vocabulary_size": str(len(vocabulary)),
        "data.oov_rate_train": f"{oov('train'):.4f}",
        "data.oov_rate": f"{oov('test'):.4f}",
        "data.length_min": str(int(train.min())),
        "data.length_median": str(int(np.median(train))),
        "data.length_max": str(int(train.max())),
        "data.padded_length": str(length),
        "data.truncated_texts": str(int(sum((n > length).sum() for n in lengths.values()))),
        # Of the training batches' steps, were every text padded to one length.
        "data.padding_share": f"{1.0 - kept.sum() / (len(kept) * length):.3f}",
        "data.classes": ",".join(classes)[:500],
    }
