"""The trained model in MLflow: an MLflow model with signature and example, and checkpoints."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pipeline.resilience import atomic_write, save_with_weights


def best_checkpoint(path: Path, monitor: str, mode: str):
    """A Keras callback that writes the best epoch's model (by `monitor`) to `path` at the end.

    Unlike ModelCheckpoint(save_best_only=True), which writes a file at every improvement
    (30-100 ms each, most epochs early on), it copies the weights in memory (under 1 ms) and
    writes once, when training ends.
    """
    import keras
    import numpy as np

    better = np.greater if mode == "max" else np.less

    class BestCheckpoint(keras.callbacks.Callback):
        best, weights = None, None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(monitor)
            if value is not None and (self.best is None or better(value, self.best)):
                self.best, self.weights = value, self.model.get_weights()

        def on_train_end(self, logs=None):
            if self.weights is not None:
                save_with_weights(self.model, self.weights, path)

    return BestCheckpoint()


def log_trained_model(model, out: Path, test_ds, registered_model_name: str | None = None):
    """The final model as model.keras and as an MLflow model; the best epoch's checkpoint."""
    import mlflow

    path = out / "model.keras"
    atomic_write(path, model.save)
    mlflow.log_artifact(str(path))
    if (out / "best.keras").exists():
        mlflow.log_artifact(str(out / "best.keras"), "checkpoints")
    example = next(iter(test_ds))[0][:5].numpy()  # five real inputs, preprocessed as in training
    return log_model(model, example, registered_model_name)


def log_model(model, example, registered_model_name: str | None = None):
    """Log `model` as an MLflow model named "model", with signature and input example.

    It loads back with `mlflow.pyfunc.load_model(f"runs:/{run_id}/model")`. Two checks MLflow
    would run on every run are left out, as they cost more than the rest of tracking: requirements
    are pinned rather than inferred (inference loads the model in a fresh Python process), and the
    input example is not served back through a reloaded model at log time (tests/ does that).
    """
    import keras
    import numpy as np
    import tensorflow as tf
    from mlflow.models import Model, ModelSignature
    from mlflow.types import Schema, TensorSpec

    # Read off the model instead of inferred from a prediction: a predict on a new batch shape
    # means a fresh tf.function trace, which costs more than the rest of the signature.
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(example.dtype), (-1, *model.input_shape[1:]))]),
        outputs=Schema(
            [TensorSpec(np.dtype(model.outputs[0].dtype), (-1, *model.output_shape[1:]))]
        ),
    )
    return Model.log(
        artifact_path=None,
        name="model",
        flavor=_TENSORFLOW_FLAVOR,
        model=model,
        signature=signature,
        input_example=example,
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
        registered_model_name=registered_model_name,
        validate_serving_input=False,
    )


def _save_tensorflow_model(validate_serving_input: bool = True, **kwargs):
    """mlflow.tensorflow.save_model, taking the switch Model.log forwards to every flavor."""
    import mlflow.tensorflow

    return mlflow.tensorflow.save_model(**kwargs)


# Model.log accepts any object with the flavor module's `save_model` as the flavor (its
# documented contract); this one is mlflow.tensorflow with `validate_serving_input` accepted.
_TENSORFLOW_FLAVOR = SimpleNamespace(
    __name__="mlflow.tensorflow", save_model=_save_tensorflow_model
)
