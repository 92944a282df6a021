"""Inference stage: `predict(conf)` runs a logged model on a file of new inputs, writes the
predictions and, with `evaluate=true`, scores them in a new MLflow run linked to the model."""

from pipeline.inference.predict import Prediction, predict

__all__ = ["Prediction", "predict"]
