"""Model stage: `build_model(cfg.model, spec)` -> an uncompiled keras.Model, and what its
recurrent layers are (cuDNN eligibility)."""

from pipeline.models.build import build_model, cell_classes
from pipeline.models.introspection import CUDNN_NEEDS, cudnn_status, cudnn_tags, recurrent_layers

__all__ = [
    "CUDNN_NEEDS",
    "build_model",
    "cell_classes",
    "cudnn_status",
    "cudnn_tags",
    "recurrent_layers",
]
