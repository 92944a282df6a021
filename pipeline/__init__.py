"""Config-driven experiments for recurrent neural networks: Hydra, tf.data, Keras 3, MLflow."""

__version__ = "0.1.0"

import os

# TensorFlow's C++ INFO and WARNING lines (CPU feature notes, partial-cache notices) drown the
# progress output; errors still show. Set TF_CPP_MIN_LOG_LEVEL yourself to see them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
