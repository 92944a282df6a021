"""`evaluate=true`: score a logged model's predictions on new labelled data with the training
run's metrics (and, for a forecast, its naive baselines), in a new MLflow run linked to the
model, so that a model's quality on fresh data is tracked beside its training."""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path

import numpy as np

from pipeline.config.errors import DataError
from pipeline.tracking.pictures import confusion_matrix
from pipeline.tracking.runs import open_run
from pipeline.training import forecasting


def class_metrics(answers, config: dict) -> dict[str, float]:
    """accuracy, f1_macro and balanced_accuracy of the predicted labels, as training scores them."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    classes = config["classes"]
    unknown = sorted(set(answers["actual"]) - set(classes))
    if unknown:
        raise DataError(
            f"The input has label(s) {', '.join(unknown[:10])} that the model was not trained "
            f"on; it knows {', '.join(classes[:20])}."
        )
    true, predicted = answers["actual"].astype(str), answers["label"].astype(str)
    with warnings.catch_warnings():  # a class absent from the new data is not news
        warnings.simplefilter("ignore", UserWarning)
        return {
            "accuracy": float(accuracy_score(true, predicted)),
            "f1_macro": float(
                f1_score(true, predicted, labels=classes, average="macro", zero_division=0)
            ),
            "balanced_accuracy": float(balanced_accuracy_score(true, predicted)),
        }


def forecast_metrics(answers, data, config: dict) -> dict[str, float]:
    """RMSE, MAE, MASE and the naive baselines over every window, in the series' units."""
    h, w = config["horizon"], config["window"]
    pred = answers["forecast"].to_numpy(np.float64).reshape(-1, h)
    actual = answers["actual"].to_numpy(np.float64).reshape(-1, h)
    target = data[config["columns"][0]].to_numpy(np.float64)
    x_target = np.stack([target[s : s + w] for s in range(len(pred))])
    scores = forecasting.scores(actual, pred, x_target, config["mase_scale"], config["season"])
    return {key.removeprefix("test_"): value for key, value in scores.items()}


def evaluate(uri: str, conf, config: dict, given, answers) -> tuple[dict[str, float], str]:
    """Score `answers` and log them, the input and the predictions to a new run; returns the
    metrics and the run's id."""
    import mlflow
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    info = mlflow.models.get_model_info(conf.model)
    client = mlflow.MlflowClient(uri)
    trained = client.get_run(info.run_id) if info.run_id else None
    if config["kind"] == "forecast":
        metrics = forecast_metrics(answers, given.data, config)
    else:
        metrics = class_metrics(answers, config)
    experiment = conf.tracking.experiment_name
    if experiment is None and trained is not None:
        experiment = client.get_experiment(trained.info.experiment_id).name
    tags = {
        "evaluation.model_uri": conf.model,
        "evaluation.model_run_id": info.run_id or "",
        "evaluation.input": str(given.path.resolve()),
        "task": config["task"],
        **(given.tags or {}),
    }
    name = f"evaluate-{trained.info.run_name}" if trained is not None else "evaluate"
    with open_run(uri, experiment or "rnn-pipeline", name, tags, system_metrics=False) as run:
        # As the training run's inputs (tracking.lineage): a file is "code that produced
        # arrays" to MLflow, described by its path and digest.
        source = CodeDatasetSource(
            tags={
                "path": str(given.path.resolve()),
                "file_sha256": hashlib.sha256(given.path.read_bytes()).hexdigest(),
            }
        )
        if isinstance(given.data, np.ndarray):
            dataset = mlflow.data.from_numpy(given.data, source=source, name=given.path.name)
        else:
            import pandas as pd

            table = given.data
            if isinstance(table, list):  # texts
                table = pd.DataFrame({config["text"]: table})
            dataset = mlflow.data.from_pandas(table, source=source, name=given.path.name)
        mlflow.log_input(dataset, context="evaluation")
        # model_id: the metrics show on the logged model's page, beside its training metrics.
        mlflow.log_metrics(metrics, model_id=info.model_id, dataset=dataset)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "predictions.csv"
            answers.to_csv(path, index=False)
            mlflow.log_artifact(str(path))
        if config["kind"] != "forecast":
            index = {c: i for i, c in enumerate(config["classes"])}
            true = answers["actual"].map(index).to_numpy()
            predicted = answers["label"].map(index).to_numpy()
            figure, _ = confusion_matrix(true, predicted, len(index), config["classes"])
            mlflow.log_figure(figure, "plots/confusion_matrix.png")
    return metrics, run.info.run_id
