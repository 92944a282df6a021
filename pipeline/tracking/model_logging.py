"""The trained model in MLflow: an MLflow model that takes raw inputs (pipeline.models.served,
logged from code), the plain `.keras` file beside it, the best epoch's checkpoint, and the test
predictions."""

from __future__ import annotations

import warnings
from pathlib import Path


def optional_columns(signature, optional: list[str]):
    """`signature` with the named input columns marked optional (a forecast's date column: a
    series without dates still gets a forecast, by row)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    if not optional or signature.inputs.is_tensor_spec():
        return signature
    columns = [
        ColSpec(c.type, c.name, required=c.name not in optional) for c in signature.inputs.inputs
    ]
    return ModelSignature(Schema(columns), signature.outputs, signature.params)


def log_model(
    keras_file: Path,
    code_file: Path,
    model_config: dict,
    example,
    answer,
    params: dict | None = None,
    registered_model_name: str | None = None,
) -> str:
    """Log the active run's MLflow model "model": MLflow's pyfunc model from `code_file` around
    the Keras model in `keras_file`, configured by `model_config`, with a signature inferred
    from a raw input `example` and the model's `answer` to it; returns its URI. It loads back
    with `mlflow.pyfunc.load_model(f"runs:/{run_id}/model")`."""
    import keras
    import mlflow.pyfunc
    import tensorflow as tf
    from mlflow.models import infer_signature

    with warnings.catch_warnings():  # "integer columns cannot hold missing values": they never do
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, answer, params)
    signature = optional_columns(
        signature, [model_config.get("time")] if model_config.get("time") else []
    )
    # Requirements pinned rather than inferred: inferring them loads the model in a fresh
    # Python process, which costs more than the rest of tracking.
    requirements = [
        f"tensorflow=={tf.__version__}",
        f"keras=={keras.__version__}",
        f"mlflow=={mlflow.__version__}",
        "pandas",
    ]
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()  # MLflow's check of the example prints a bar
    try:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code_file),
            artifacts={"keras_model": str(keras_file)},
            model_config=model_config,
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            registered_model_name=registered_model_name,
        )
    finally:
        if interactive:
            keras.config.enable_interactive_logging()
    return info.model_uri


def log_files(out: Path, predictions) -> None:
    """The plain Keras files (model.keras, raw inputs in; the best epoch's checkpoint, as
    trained) and the test predictions (`predictions/test.csv`) of the active run."""
    import mlflow

    if (out / "best.keras").exists():
        mlflow.log_artifact(str(out / "best.keras"), "checkpoints")
    mlflow.log_artifact(str(out / "model.keras"))
    if predictions is not None:
        path = out / "test.csv"
        predictions.to_csv(path, index=False)
        mlflow.log_artifact(str(path), "predictions")
