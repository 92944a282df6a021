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
    if (out / "best.keras").exists():
        tracker.post("log_artifact", str(out / "best.keras"), "checkpoints")
    example = next(iter(test_ds))[0][:5].numpy()  # five real inputs, preprocessed as in training
    return log_model(tracker, model, example, out / "model.keras", registered_model_name)


def log_model(tracker, model, example, path: Path, registered_model_name: str | None = None) -> str:
    """Save `model` to `path` (.keras), log that file, and log it as the run's MLflow model
    "model" with signature and input example; returns the model's URI. It loads back with
    `mlflow.pyfunc.load_model(f"runs:/{run_id}/model")`.

    The tracker writes the MLflow model's folder (pipeline/mlflow_model.py) from the saved file,
    so this process, which holds TensorFlow, never imports MLflow. The input example is not
    served back through a reloaded model at log time (tests/ does that).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from pipeline.mlflow_model import KerasModelFiles

    atomic_write(path, model.save)
    tracker.post("log_artifact", str(path))
    # Read off the model instead of inferred from a prediction: a predict on a new batch shape
    # means a fresh tf.function trace, which costs more than the rest of the signature.
    files = KerasModelFiles(
        keras_file=str(path),
        example=example,
        inputs=(example.dtype.str, (-1, *model.input_shape[1:])),
        outputs=(np.dtype(model.outputs[0].dtype).str, (-1, *model.output_shape[1:])),
        tensorflow_version=tf.__version__,
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
    )
    return tracker.log_model(files, registered_model_name)
