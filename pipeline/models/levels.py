"""Forecasting a series that trends: each window's level comes out of the inputs and goes back
onto the forecast (`data.level`), so the model learns changes, not absolute values.

A chronological test split of a trending series lies above (or below) every value the model saw
in training; a model that maps windows to absolute values cannot get there, one that forecasts
the change from the window's last value (or mean, as RevIN does) can. It is done inside the
model with Keras' own layers, so the logged model still takes the scaled window and returns the
forecast, and needs nothing undone outside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.data import DataSpec


def assemble(stack: list, spec: DataSpec, name: str):
    """`stack` (a keras.Input, then layers) as one model: Sequential, or, when `spec.level` is
    set, functional with the window's level subtracted first and the target's added last."""
    import keras
    from keras import layers

    if spec.level is None:
        return keras.Sequential(stack, name=name)
    inputs, *body = stack
    steps, channels = spec.input_shape
    if spec.level == "last":
        level = layers.Cropping1D((steps - 1, 0), name="window_last")(inputs)  # (batch, 1, ch)
    else:
        level = layers.GlobalAveragePooling1D(keepdims=True, name="window_mean")(inputs)
    x = layers.Subtract(name="minus_level")([inputs, level])  # broadcast over the steps
    for layer in body:
        x = layer(x)
    target = level  # the target is input channel 0 (pipeline.data.series.windowed)
    if channels > 1:
        target = layers.Permute((2, 1), name="channels_first")(target)
        target = layers.Cropping1D((0, channels - 1), name="target_level")(target)
    if not spec.sequence_output:
        target = layers.Flatten(name="target_level_flat")(target)  # (batch, 1): every horizon step
    out = layers.Add(dtype="float32", name="plus_level")([x, target])
    return keras.Model(inputs, out, name=name)
