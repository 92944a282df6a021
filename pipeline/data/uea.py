"""Labelled sequences in the UEA/UCR archive's `.ts` format: the datasets `aeon` ships inside its
package (offline), or a user's `FILE_TRAIN.ts` / `FILE_TEST.ts` pair, univariate or
multivariate, equal or unequal length, string or numeric labels.

The archive gives train and test only; validation is a stratified, seeded share of train.
Unequal sequences are padded at the end with PAD_VALUE, which the model masks (right padding is
what the cuDNN kernels accept with a mask).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from pipeline.config.errors import DataError
from pipeline.config.schema import UeaDataConfig
from pipeline.data.datasets import Datasets, existing_file
from pipeline.data.labelled import labelled_datasets, stratified_split


def shipped() -> list[str]:
    """The datasets aeon's package carries with both splits."""
    root = resources.files("aeon.datasets") / "data"
    return sorted(
        d.name for d in root.iterdir() if d.is_dir() and (d / f"{d.name}_TRAIN.ts").is_file()
    )


def _pair(cfg: UeaDataConfig) -> tuple[Path, Path]:
    if cfg.path is None:
        if cfg.name not in shipped():
            raise DataError(
                f"`data.name={cfg.name}` is not one of the UEA/UCR datasets aeon ships offline "
                f"({', '.join(shipped())}). Pick one of those, or download the dataset's "
                "`NAME_TRAIN.ts` and `NAME_TEST.ts` from timeseriesclassification.com and pass "
                "`data.path=/path/NAME_TRAIN.ts`."
            )
        root = Path(str(resources.files("aeon.datasets") / "data" / cfg.name))
        return root / f"{cfg.name}_TRAIN.ts", root / f"{cfg.name}_TEST.ts"
    train = Path(cfg.path).expanduser()
    if not train.name.endswith("_TRAIN.ts"):
        raise DataError(
            f"`data.path={cfg.path}` should name the training file of a .ts pair, ending in "
            "`_TRAIN.ts`, with its `_TEST.ts` file beside it."
        )
    test = train.with_name(train.name.removesuffix("_TRAIN.ts") + "_TEST.ts")
    fix = "Pass `data.path=` the `_TRAIN.ts` file of a pair whose `_TEST.ts` lies beside it."
    return tuple(existing_file(path, f"The .ts file {path}", fix) for path in (train, test))


def read_ts(path: Path, labelled: bool = True) -> tuple[list[np.ndarray], np.ndarray | None]:
    """(sequences as (steps, channels) float arrays, labels as strings), or a DataError; with
    `labelled=False` a file without labels gives None for them."""
    from aeon.datasets import load_from_ts_file

    try:
        x, y = load_from_ts_file(str(path))
    except Exception as exc:  # noqa: BLE001 - aeon raises IOError/ValueError/... on bad files
        raise DataError(
            f"The .ts file {path} could not be read ({type(exc).__name__}: {exc}). Check its "
            "header (@problemName, @univariate, @classLabel true ..., @data) against the "
            "format at timeseriesclassification.com."
        ) from None
    if labelled and (y is None or len(y) == 0):
        raise DataError(
            f"The .ts file {path} holds no labelled sequences. It needs a header with "
            "`@classLabel true LABELS...` and `@data`, then one sequence per line ending in its "
            "label (channels separated by `:`)."
        )
    sequences = [np.asarray(s, dtype=np.float64).T for s in x]  # aeon: (channels, steps)
    for i, s in enumerate(sequences):
        if not np.isfinite(s).all():
            raise DataError(
                f"Sequence {i} of {path} holds missing or infinite values. The archive's "
                "unequal-length datasets end early instead; remove or fill those values."
            )
    if y is None or len(y) == 0:
        return sequences, None
    return sequences, np.asarray(y).astype(str)


def load(cfg: UeaDataConfig, seed: int) -> Datasets:
    train_path, test_path = _pair(cfg)
    x_train, y_train = read_ts(train_path)
    x_test, y_test = read_ts(test_path)
    classes = sorted(set(y_train))
    if len(classes) < 2:
        raise DataError(
            f"{train_path} has a single class ({classes[0]!r}): a classifier needs at least two."
        )
    unseen = sorted(set(y_test) - set(classes))
    if unseen:
        raise DataError(
            f"{test_path} has label(s) the training file lacks: {', '.join(unseen)}. Both files "
            "need the same classes."
        )
    if cfg.val_fraction > 0:
        keep, held = stratified_split(y_train, cfg.val_fraction, seed)
    else:  # no validation split: the whole training file trains
        keep, held = np.arange(len(y_train)), None
    splits = {  # ids: the case's number in its file
        "train": ([x_train[i] for i in keep], y_train[keep], keep),
        "test": (x_test, y_test, np.arange(len(x_test))),
    }
    if held is not None:
        splits["val"] = ([x_train[i] for i in held], y_train[held], held)
    source = {
        "loader": "aeon.datasets.load_from_ts_file",
        "args": {"train": str(train_path.resolve()), "test": str(test_path.resolve())},
    }
    return labelled_datasets(splits, classes, cfg, seed, source, ts_layout(x_train[0].shape[1]))


def ts_layout(channels: int) -> dict:
    """The columns a `.ts` file's sequences have as a long table: the case number, the step and
    one column per channel, named as aeon names the dimensions (dim_0, dim_1, ...)."""
    features = [f"dim_{i}" for i in range(channels)]
    return {"id": "case", "order": "step", "features": features, "label": None}
