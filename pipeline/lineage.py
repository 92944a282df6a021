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


def describe_splits(data, data_name: str) -> list[dict]:
    """Each split as plain data: its name `<data>-<split>`, role, content digest, the loader's
    source description, and its arrays' shapes and dtypes (never the arrays themselves).

    Made where the arrays are (the training process), handed to the tracker, which may be in
    another process, and turned into MLflow datasets there by `mlflow_dataset`.
    """
    tags = source_tags(data.source)
    return [
        {
            "name": f"{data_name}-{split}",
            "context": split,
            "digest": content_digest(x, y),
            "source": tags,
            "features": (tuple(x.shape), x.dtype.str),
            "targets": (tuple(y.shape), y.dtype.str),
        }
        for split, (x, y) in data.arrays.items()
    ]


def mlflow_dataset(split: dict):
    """The mlflow.data NumpyDataset for one `describe_splits` entry, digest and source ours.

    A generator, a TFDS build and a CSV file are all "code that produced arrays" to MLflow; the
    code source keeps the loader's own description (arguments, version, path, sha256).
    """
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    return mlflow.data.from_numpy(
        _stand_in(*split["features"]),
        source=CodeDatasetSource(tags=split["source"]),
        targets=_stand_in(*split["targets"]),
        name=split["name"],
        digest=split["digest"],
    )


def _stand_in(shape: tuple, dtype: str) -> np.ndarray:
    """An array of `shape` and `dtype` held in one element: MLflow's schema and profile read
    only shape, dtype and size (tests/test_lineage.py checks they match the real arrays')."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape, (0,) * len(shape))
