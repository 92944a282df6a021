"""The model users run: the trained model with the scaling it was trained behind put around it,
so that it takes inputs in the data's own units and answers in them (or in class
probabilities). Keras' own layers only, so the `.keras` file loads with plain Keras."""

from __future__ import annotations


def servable(model, task: str, serving: dict, target: dict | None = None, tokens=None):
    """`model` (trained on scaled inputs) between the data's scaling and its inverse.

    Args:
        task: "classification" (the logits become probabilities) or "regression".
        serving: Datasets.serving; a forecast's `input_mean`/`input_std` scale the inputs.
        target: Datasets.scaler for regression ({"mean", "std"}: the target's scaling, undone).
        tokens: for text, the TextVectorization layer that made the training ids: the model
            then takes one raw string per row.
    """
    import keras
    from keras import layers

    if tokens is not None:
        inputs = keras.Input(shape=(1,), dtype="string", name="text")
        x = tokens(inputs)
    else:
        inputs = keras.Input(shape=model.input_shape[1:], name="raw")
        x = inputs
    if "input_mean" in serving:
        std = [float(s) for s in serving["input_std"]]
        x = layers.Normalization(
            mean=serving["input_mean"], variance=[s * s for s in std], name="input_scaling"
        )(x)
    x = model(x)
    if task == "classification":
        x = layers.Softmax(dtype="float32", name="probabilities")(x)
    elif target:
        x = layers.Rescaling(
            scale=target["std"], offset=target["mean"], dtype="float32", name="target_units"
        )(x)
    return keras.Model(inputs, x, name=f"{model.name}_servable")
