"""The trained model in MLflow: an MLflow model with signature and input example, the plain
`.keras` file beside it, and the best epoch's checkpoint."""

from __future__ import annotations

from pathlib import Path


def signature_of(model, example):
    """The model's tensor signature, read off the model rather than inferred from a prediction:
    a predict on a new batch shape means a fresh tf.function trace."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    # -1 for any size: the batch, and the steps where batches are bucketed by length.
    steps = tuple(-1 if d is None else d for d in model.input_shape[1:])
    inputs = TensorSpec(example.dtype, (-1, *steps))
    outputs = TensorSpec(np.dtype(model.outputs[0].dtype), (-1, *model.output_shape[1:]))
    return ModelSignature(Schema([inputs]), Schema([outputs]))


def log_model(model, example, registered_model_name: str | None = None) -> str:
    """Log `model` as the active run's MLflow model "model" (signature, input example); returns
    its URI. It loads back with `mlflow.pyfunc.load_model(f"runs:/{run_id}/model")`.

    `mlflow.tensorflow`, not `mlflow.keras`: MLflow 3's Keras flavor fails when given an input
    example (it writes the example before it creates the model's folder).
    """
    import keras
    import mlflow.tensorflow
    import tensorflow as tf

    # Requirements pinned rather than inferred: inference loads the model in a fresh Python
    # process, which costs more than the rest of tracking.
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    interactive = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()  # MLflow's check of the example prints a bar
    try:
        info = mlflow.tensorflow.log_model(
            model,
            name="model",
            signature=signature_of(model, example),
            input_example=example,
            pip_requirements=requirements,
            registered_model_name=registered_model_name,
        )
    finally:
        if interactive:
            keras.config.enable_interactive_logging()
    return info.model_uri


def log_trained_model(model, out: Path, test_ds, registered_model_name: str | None = None) -> str:
    """The final model as model.keras and as an MLflow model; the best epoch's checkpoint
    (written by the training stage's callback) under checkpoints/."""
    import mlflow

    if (out / "best.keras").exists():
        mlflow.log_artifact(str(out / "best.keras"), "checkpoints")
    model.save(out / "model.keras")
    mlflow.log_artifact(str(out / "model.keras"))
    example = next(iter(test_ds))[0][:5].numpy()  # five real inputs, preprocessed as in training
    return log_model(model, example, registered_model_name)
