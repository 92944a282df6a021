"""Layers the model stage needs and Keras lacks, registered so that a saved `.keras` model loads
back with `keras.saving.load_model` once this module is imported (`build_model` imports it)."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="pipeline")
class AttentionPooling(layers.Layer):
    """Attention pooling over the steps: (batch, steps, features) -> (batch, features).

    A learned score per step (one Dense unit over the step's features), a softmax over the steps
    with masked (padded) ones given weight 0, and the steps' sum weighted by it. Keras has
    attention of a query over values (`Attention`, `MultiHeadAttention`: the query has to come
    from somewhere) and mask-aware mean and max pooling, but no layer that pools the steps by a
    score of their own.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.score = layers.Dense(1, name="score")
        # Keras' Softmax takes the mask: padded steps are set to a large negative score before
        # it and to exactly 0 after it.
        self.softmax = layers.Softmax(axis=-1, name="weights")

    def build(self, input_shape):
        self.score.build(input_shape)

    def call(self, inputs, mask=None):
        scores = ops.squeeze(self.score(inputs), axis=-1)  # (batch, steps)
        weights = self.softmax(scores, mask=mask)
        return ops.einsum("bs,bsf->bf", weights, inputs)

    def compute_mask(self, inputs, mask=None):
        return None  # the step axis, and what was masked along it, is gone

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
