"""`predict(conf)`: load a logged model (a run's, or a registry alias's), run it on new inputs in
chunks with progress, and write the predictions; `evaluate=true` scores them too."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config.errors import DataError, PipelineError
from pipeline.config.predict import PredictConfig
from pipeline.inference import inputs
from pipeline.tracking.store import check_store, quiet_mlflow_logs, resolve_tracking_uri
from pipeline.training.devices import native_stderr_filtered


@dataclass
class Prediction:
    """What one `pipeline.predict` call produced."""

    output: Path
    rows: int  # rows written
    inputs: int  # inputs predicted: series windows, sequences or array rows
    seconds: float
    kind: str
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None  # the evaluation run, with evaluate=true


def load(uri: str, model: str):
    """The pyfunc model at `model`, and its config; a PipelineError for a URI that names no
    model, or a model logged before models took raw inputs."""
    import mlflow
    from mlflow.exceptions import MlflowException

    quiet_mlflow_logs()
    mlflow.set_tracking_uri(uri)
    try:
        with native_stderr_filtered():  # TensorFlow's start-up lines, as in training
            loaded = mlflow.pyfunc.load_model(model)
    except (MlflowException, OSError) as exc:
        first = str(exc).splitlines()[0][:300]
        raise PipelineError(
            f"No MLflow model could be loaded from `model={model}` in the store {uri} ({first}). "
            "Give a run's model as `model=runs:/RUN_ID/model` (the run summary prints the run "
            "id), a registered one as `model=models:/NAME@ALIAS` or `models:/NAME/VERSION`, and "
            "`tracking.uri=` the store the run was logged to."
        ) from None
    config = dict(loaded.model_config or {})
    if "kind" not in config:
        raise PipelineError(
            f"The model at `model={model}` was logged before models took raw inputs (it has no "
            "input layout in its config), so pipeline.predict cannot read files for it. Train it "
            "again with this version, or call its Keras model on scaled inputs yourself."
        )
    return loaded, config


def chunks(data, config: dict, size: int):
    """The input in pieces of about `size` inputs (sequences by id), with their input counts."""
    if config["kind"] == "forecast":  # one series: its windows overlap, so it goes in whole
        yield data, len(data)
        return
    if config["kind"] in ("arrays", "text"):
        for i in range(0, len(data), size):
            yield data[i : i + size], len(data[i : i + size])
        return
    ids = np.sort(data[config["id"]].unique())
    for i in range(0, len(ids), size):
        part = ids[i : i + size]
        yield data[data[config["id"]].isin(part)], len(part)


def run_model(model, data, config: dict, windows: str, size: int):
    """The model's answers over every chunk, printing progress when there is more than one."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    params = {"windows": windows} if config["kind"] == "forecast" else None
    total = len(data) if config["kind"] != "sequences" else data[config["id"]].nunique()
    done, parts, started = 0, [], time.perf_counter()
    for piece, count in chunks(data, config, size):
        try:
            parts.append(model.predict(piece, params=params))
        except MlflowException as exc:
            # MLflow's schema errors quote the whole input first: keep the reason only.
            reason = exc.message.rpartition("Error: ")[2] or exc.message
            raise DataError(f"The model refused the input: {reason[:600]}") from None
        done += count
        if count < total:
            rate = done / max(time.perf_counter() - started, 1e-9)
            print(f"predicted {done:,} / {total:,} inputs ({rate:,.0f}/s)", file=sys.stderr)
    answers = pd.concat(parts, ignore_index=True)
    if config["kind"] in ("arrays", "text"):  # each chunk counts its rows from 0
        answers["row"] = np.arange(len(answers))
    return answers


def write(frame, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.partial")  # no half-written file on a failure
    if output.suffix.lower() == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(output)


def predict(conf: PredictConfig) -> Prediction:
    """Predict `conf.input` with `conf.model` and write `conf.output`; see pipeline/cli/predict.yaml."""
    uri = resolve_tracking_uri(conf.tracking.uri)
    check_store(uri)
    model, config = load(uri, conf.model)
    given = inputs.read(conf.input, config)
    windows = conf.windows or ("all" if conf.evaluate else "last")
    if conf.evaluate and config["kind"] == "forecast" and windows != "all":
        raise PipelineError(
            "`evaluate=true` compares every window's forecast with the values that followed it, "
            "so it needs `windows=all` (or `windows` left unset)."
        )
    if conf.evaluate and config["task"] == "classification" and given.labels is None:
        raise PipelineError(
            f"`evaluate=true` needs the true labels, and {given.path} has none. Give a labelled "
            "file: a .ts file with labels, the table's label column, or an .npz with `y`."
        )
    started = time.perf_counter()
    answers = run_model(model, given.data, config, windows, conf.chunk_size)
    seconds = time.perf_counter() - started
    if given.labels is not None:  # after the id (or row) column
        answers.insert(1, "actual", given.labels)
    counted = len(answers) // config["horizon"] if config["kind"] == "forecast" else given.count
    result = Prediction(Path(conf.output), len(answers), counted, seconds, config["kind"])
    if conf.evaluate:
        from pipeline.inference.evaluate import evaluate

        result.metrics, result.run_id = evaluate(uri, conf, config, given, answers)
    write(answers, result.output)
    return result
