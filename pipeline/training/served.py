"""After training: the model users run (raw inputs in, answers in the data's own units or class
names out) logged with the run, and the run's test predictions in the same form, so that a
prediction from the logged model can be checked against them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.data import text
from pipeline.models.export import servable
from pipeline.tracking import model_logging
from pipeline.tracking.pictures import forward, original_units
from pipeline.training import forecasting


def class_names(data) -> list[str]:
    return list(data.class_names) or [str(i) for i in range(data.spec.output_size)]


def model_config(data) -> dict:
    """What the logged model needs besides the Keras model: the raw input's layout (from the
    data stage), the task, the class names, and for a forecast the MASE scale."""
    config = {**data.serving, "task": data.spec.task}
    if data.spec.task == "classification":
        config["classes"] = class_names(data)
    if forecasting.is_forecast(data):
        config["mase_scale"] = forecasting.mase_scale(data.train_target, data.serving["season"])
    # Plain Python values: MLflow writes the config as YAML, which refuses NumPy scalars.
    return json.loads(json.dumps(config, default=lambda value: value.item()))


def test_predictions(model, data):
    """The test split's predictions as the logged model gives them (a DataFrame), computed the
    training way (scaled inputs, the trained model); None where there is no such form."""
    import pandas as pd

    x, y = data.arrays["test"]
    if data.spec.task == "classification":
        names = class_names(data)
        logits = forward(model, x)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
        out = pd.DataFrame({data.serving.get("id", "row"): data.test_ids})
        out["actual"] = [names[int(i)] for i in y]
        out["label"] = [names[i] for i in probabilities.argmax(axis=-1)]
        for k, name in enumerate(names):
            out[f"p_{name}"] = probabilities[:, k]
        return out
    if not forecasting.is_forecast(data):
        return None
    n, h = len(x), y.shape[1]
    pred = original_units(forward(model, x).reshape(n, h), data.scaler)
    actual = original_units(y.reshape(n, h), data.scaler)
    rows = np.asarray(data.test_ids)[:, None] + np.arange(h)[None, :]
    out = pd.DataFrame({"step": np.tile(np.arange(1, h + 1), n), "forecast": pred.ravel()})
    if data.test_times is None:
        out.insert(0, "row", rows.ravel())
    else:  # the test windows' first targets are consecutive rows: date the later steps from them
        from pipeline.models.served import future_times

        times = pd.DatetimeIndex(data.test_times)
        first = rows.ravel() - int(data.test_ids[0])
        out.insert(0, data.serving["time"], future_times(times, first, data.serving["frequency"]))
    out["actual"] = actual.ravel()
    return out


def log_served_model(model, data, out: Path, registered_model_name: str | None = None) -> str:
    """Save model.keras (raw inputs in) and log it, the checkpoint, the test predictions and
    the MLflow model to the active run; returns the MLflow model's URI."""
    from pipeline.models import served  # imports MLflow: only once a model is to be logged

    regression = data.spec.task != "classification"
    tokens = None
    if data.vocabulary:  # text: the training run's tokenisation in front
        tokens = text.vectorizer(data.serving, data.vocabulary, data.serving["length"])
    target = data.scaler if regression else None
    keras_model = servable(model, data.spec.task, data.serving, target, tokens)
    keras_model.save(out / "model.keras")
    config = model_config(data)
    params = {"windows": "last"} if config["kind"] == "forecast" else None
    runner = served.RnnModel()
    runner.model, runner.config = keras_model, config
    answer = runner.predict(None, data.example, params)
    model_logging.log_files(out, test_predictions(model, data))
    return model_logging.log_model(
        out / "model.keras",
        Path(served.__file__),
        config,
        data.example,
        answer,
        params,
        registered_model_name,
    )
