"""MNIST-1D, generated offline by the `mnist1d` package and cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from pipeline.config.errors import DataError
from pipeline.config.schema import Mnist1dDataConfig
from pipeline.data.datasets import Datasets, DataSpec, array_serving, build_datasets


def cache_root(cache_dir: str | None) -> Path:
    """The folder for generated data: the config's, else $RNN_PIPELINE_CACHE, else ~/.cache."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("RNN_PIPELINE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rnn-pipeline"


def generator_args(cfg: Mnist1dDataConfig) -> dict:
    """The generator's arguments: the package defaults with our overrides, minus its URL."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)  # never download: we generate
    args.update(num_samples=cfg.num_samples, train_split=cfg.train_split, seed=cfg.generator_seed)
    return args


def generate(cfg: Mnist1dDataConfig) -> tuple[dict[str, np.ndarray], dict, Path]:
    """Return the generated arrays, the generator args and the cache file, generating on a miss."""
    args = generator_args(cfg)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root(cfg.cache_dir) / f"mnist1d-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}, args, path
        except (OSError, ValueError):
            pass  # a corrupt cache file is simply regenerated
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    state = np.random.get_state()  # the generator reseeds numpy's global RNG; put it back
    try:
        raw = make_dataset(ObjectView(args))
    finally:
        np.random.set_state(state)
    arrays = {k: np.asarray(raw[k]) for k in ("x", "y", "x_test", "y_test")}
    try:
        # A temporary name renamed into place: a concurrent run or a kill mid-write never
        # leaves a half-written cache for the next run to read.
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}-{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(
            f"Could not write the MNIST-1D cache file {path}: {exc.strerror}. "
            "Point `data.cache_dir` (or $RNN_PIPELINE_CACHE) at a writable folder."
        ) from None
    return arrays, args, path


def load(cfg: Mnist1dDataConfig, seed: int) -> Datasets:
    arrays, args, path = generate(cfg)
    x = arrays["x"].astype(np.float32)[..., None]
    y = arrays["y"].astype(np.int32)
    n_val = int(round(len(x) * cfg.val_fraction))
    if n_val < 1 or n_val >= len(x):
        raise DataError(
            f"`data.val_fraction={cfg.val_fraction}` leaves {n_val} of {len(x)} training "
            "examples for validation. Choose a fraction that keeps at least one example on each side."
        )
    # The generator already shuffled, so the last examples are a fair validation sample.
    splits = {
        "train": (x[:-n_val], y[:-n_val]),
        "val": (x[-n_val:], y[-n_val:]),
        "test": (arrays["x_test"].astype(np.float32)[..., None], arrays["y_test"].astype(np.int32)),
    }
    spec = DataSpec(input_shape=x.shape[1:], task="classification", output_size=10)
    source = {"loader": "mnist1d.data.make_dataset", "args": args, "cache_file": str(path)}
    return build_datasets(
        splits, spec, cfg, seed, source=source, **array_serving(splits["test"][0])
    )
