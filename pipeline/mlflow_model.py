"""The run's MLflow model, written by the tracker (where MLflow is) from the `.keras` file the
training process saved (where TensorFlow is), so neither process imports the other's library.

The folder is the one `mlflow.tensorflow.save_model` writes for a Keras 3 model: data/model.keras
beside keras_module.txt and save_format.txt, an MLmodel with the `tensorflow` and
`python_function` flavors, signature and input example, and the environment files. So
`mlflow.pyfunc.load_model` and `mlflow.tensorflow.load_model` load it as their own;
tests/test_tracking.py compares it with MLflow's, file by file, to catch a change in MLflow.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

# What mlflow.tensorflow.save_model records for a Keras model saved as a .keras file: the module
# it imports to load it, and its default `save_format` (loaded compiled).
KERAS_MODULE = "tensorflow.keras"
SAVE_FORMAT = "tf"
DATA = "data"


@dataclass
class KerasModelFiles:
    """What the training process hands over: plain data and a file, no TensorFlow objects."""

    keras_file: str  # the model saved with model.save(...keras)
    example: object  # a few real inputs (numpy), the model's input example
    inputs: tuple[str, tuple]  # (dtype, shape with -1 for the batch) of the input tensor
    outputs: tuple[str, tuple]  # the same for the output tensor
    tensorflow_version: str
    pip_requirements: list[str]


class KerasFlavor:
    """A flavor for `mlflow.models.Model.log`, which accepts any object with a
    `save_model(path, mlflow_model, **kwargs)` that writes an MLflow model into `path`."""

    __name__ = "mlflow.tensorflow"  # recorded as the logged model's flavor

    def __init__(self, files: KerasModelFiles):
        self.files = files

    def save_model(self, path: str, mlflow_model, **kwargs) -> None:
        import yaml
        from mlflow import pyfunc
        from mlflow.models import ModelSignature
        from mlflow.models.utils import _save_example
        from mlflow.utils.environment import _process_pip_requirements, _PythonEnv
        from mlflow.utils.file_utils import get_total_file_size

        files = self.files
        data = os.path.join(path, DATA)
        os.makedirs(data)
        shutil.copyfile(files.keras_file, os.path.join(data, "model.keras"))
        for name, text in (("keras_module.txt", KERAS_MODULE), ("save_format.txt", SAVE_FORMAT)):
            with open(os.path.join(data, name), "w") as f:
                f.write(text)

        mlflow_model.signature = ModelSignature(
            _tensor_schema(*files.inputs), _tensor_schema(*files.outputs)
        )
        _save_example(mlflow_model, files.example, path)
        mlflow_model.add_flavor(
            "tensorflow",
            code=None,
            data=DATA,
            model_type="keras",
            keras_version=files.tensorflow_version,  # sic: MLflow records TensorFlow's version
            save_format=SAVE_FORMAT,
        )
        pyfunc.add_to_model(
            mlflow_model,
            loader_module="mlflow.tensorflow",
            conda_env="conda.yaml",
            python_env="python_env.yaml",
            code=None,
            data=DATA,
        )
        mlflow_model.model_size_bytes = get_total_file_size(path)
        mlflow_model.save(os.path.join(path, "MLmodel"))

        # Requirements pinned rather than inferred: inference loads the model in a fresh Python
        # process, which costs more than the rest of tracking.
        conda_env, requirements, _ = _process_pip_requirements(None, files.pip_requirements)
        with open(os.path.join(path, "conda.yaml"), "w") as f:
            yaml.safe_dump(conda_env, stream=f, default_flow_style=False)
        with open(os.path.join(path, "requirements.txt"), "w") as f:
            f.write("\n".join(requirements))
        _PythonEnv.current().to_yaml(os.path.join(path, "python_env.yaml"))


def _tensor_schema(dtype: str, shape):
    import numpy as np
    from mlflow.types import Schema, TensorSpec

    return Schema([TensorSpec(np.dtype(dtype), tuple(shape))])
