"""The trained model in MLflow: an MLflow model with signature and example, and checkpoints."""

from __future__ import annotations

from pathlib import Path

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


def log_trained_model(
    tracker, model, out: Path, test_ds, registered_model_name: str | None = None
) -> str:
    """The final model as model.keras and as an MLflow model; the best epoch's checkpoint."""
    path = out / "model.keras"
    atomic_write(path, model.save)
    tracker.post("log_artifact", str(path))
    if (out / "best.keras").exists():
        tracker.post("log_artifact", str(out / "best.keras"), "checkpoints")
    example = next(iter(test_ds))[0][:5].numpy()  # five real inputs, preprocessed as in training
    return log_model(tracker, model, example, out / "mlflow_model", registered_model_name)


def log_model(
    tracker, model, example, folder: Path, registered_model_name: str | None = None
) -> str:
    """Log `model` as the run's MLflow model "model", with signature and input example; returns
    its URI. It loads back with `mlflow.pyfunc.load_model(f"runs:/{run_id}/model")`.

    The model is saved here, into `folder`, where TensorFlow is loaded; the tracker (perhaps in
    another process) logs the folder. Two checks MLflow would run on every run are left out, as
    they cost more than the rest of tracking: requirements are pinned rather than inferred
    (inference loads the model in a fresh Python process), and the input example is not served
    back through a reloaded model at log time (tests/ does that).
    """
    import shutil

    import keras
    import mlflow.tensorflow
    import numpy as np
    import tensorflow as tf
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    # Read off the model instead of inferred from a prediction: a predict on a new batch shape
    # means a fresh tf.function trace, which costs more than the rest of the signature.
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(example.dtype), (-1, *model.input_shape[1:]))]),
        outputs=Schema(
            [TensorSpec(np.dtype(model.outputs[0].dtype), (-1, *model.output_shape[1:]))]
        ),
    )
    shutil.rmtree(folder, ignore_errors=True)  # save_model refuses an existing folder
    mlflow.tensorflow.save_model(
        model,
        str(folder),
        signature=signature,
        input_example=example,
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
    )
    return tracker.log_model(str(folder), registered_model_name)
