"""Data lineage: each split logged as an MLflow dataset input with its source and a content digest."""

from __future__ import annotations

import hashlib
import json

import numpy as np

# MLflow stores a dataset digest in a 36-character column; 32 hex digits of SHA-256 fit.
DIGEST_CHARS = 32


def content_digest(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 over every value, dtype and shape of a split.

    MLflow's own numpy digest hashes only the first 10,000 values, so a change near the end
    of a CSV would keep the digest; hashing everything costs milliseconds at these sizes.
    """
    sha = hashlib.sha256()
    for array in (x, y):
        array = np.ascontiguousarray(array)
        sha.update(f"{array.dtype.str}{array.shape}".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()[:DIGEST_CHARS]


def source_tags(source: dict) -> dict[str, str]:
    """The loader's description of where data came from, as flat strings for the UI."""
    tags = {"loader": str(source.get("loader", "unknown"))}
    for key, value in source.items():
        if key != "loader":
            tags[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return tags


def log_datasets(data, data_name: str) -> None:
    """Log each split of `data` (a `Datasets`) as a dataset input of the active run: named
    `<data>-<split>`, with its role (train/val/test) as context, the loader's source description
    and our full-content digest."""
    import mlflow
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    # A generator, a TFDS build and a CSV file are all "code that produced arrays" to MLflow;
    # the code source keeps the loader's own description (arguments, version, path, sha256).
    source = CodeDatasetSource(tags=source_tags(data.source))
    datasets, contexts, tags = [], [], []
    for split, (x, y) in data.arrays.items():
        datasets.append(
            mlflow.data.from_numpy(
                x,
                source=source,
                targets=y,
                name=f"{data_name}-{split}",
                digest=content_digest(x, y),
            )
        )
        contexts.append(split)
        split_tags = {"num_examples": str(len(x))}
        if data.class_names:  # per-class counts: a skewed split shows in the UI
            counts = np.bincount(y.astype(int).ravel(), minlength=len(data.class_names))
            split_tags["class_counts"] = json.dumps(
                dict(zip(data.class_names, counts.tolist(), strict=True))
            )[:5000]
        tags.append(split_tags)
    log_inputs(datasets=datasets, contexts=contexts, tags_list=tags)
    if data.vocabulary:  # text: line i holds token id i (0: padding, empty; 1: [UNK])
        mlflow.log_text("\n".join(data.vocabulary) + "\n", "vocabulary.txt")


def log_inputs(**inputs) -> None:
    """`mlflow.log_inputs`, once more after losing a race on a new dataset.

    MLflow's SQL store (3.17) looks a dataset up, then inserts it if missing, without a lock:
    runs on a database server (an `mlflow server` on PostgreSQL, sweep workers) that log the same
    new dataset at the same moment all insert it, and all but one fail with a duplicate-key
    error. The dataset exists once the winner has committed, so the same call then links it.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.log_inputs(**inputs)
    except MlflowException as exc:
        text = str(exc).lower()
        if "insert into datasets" not in text or not ("duplicate" in text or "unique" in text):
            raise
        mlflow.log_inputs(**inputs)
