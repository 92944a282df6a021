"""What a built model's recurrent layers are: found inside wrappers, and whether each one runs
on the fused cuDNN kernel of a GPU."""

from __future__ import annotations

# Keras' conditions for the fused cuDNN kernel (keras/src/backend/tensorflow/rnn.py: cudnn_ok,
# plus the layers' own recurrent_dropout and use_cudnn checks). They describe the standard cell
# cuDNN computes, which is also what the hand-written LSTM gradient computes
# (pipeline/training/cpu/fused_lstm.py).
CUDNN_NEEDS = {
    "activation": "tanh",
    "recurrent_activation": "sigmoid",
    "recurrent_dropout": 0.0,
    "unroll": False,
    "use_bias": True,
}


def recurrent_layers(model) -> list:
    """The model's recurrent layers, looking inside Bidirectional wrappers."""
    from keras import layers

    found = []
    for layer in model.layers:
        if isinstance(layer, layers.Bidirectional):
            found += [layer.forward_layer, layer.backward_layer]
        elif isinstance(layer, layers.RNN):
            found.append(layer)
    return found


def cudnn_status(kind: str, config: dict) -> str:
    """ "eligible", or "no: <reasons>" for one recurrent layer given its Keras config."""
    if kind not in ("LSTM", "GRU"):
        return f"no: {kind} has no cuDNN kernel"
    needs = dict(CUDNN_NEEDS, **({"reset_after": True} if kind == "GRU" else {}))
    reasons = [
        f"{key}={config.get(key)!r} (needs {want!r})"
        for key, want in needs.items()
        if config.get(key, want) != want
    ]
    if config.get("use_cudnn", "auto") is False:
        reasons.append("use_cudnn=False")
    return "eligible" if not reasons else "no: " + ", ".join(reasons)


def cudnn_tags(model) -> dict[str, str]:
    """`cudnn.<layer>`: each recurrent layer's cuDNN status, as run tags."""
    return {
        f"cudnn.{layer.name}": cudnn_status(type(layer).__name__, layer.get_config())
        for layer in recurrent_layers(model)
    }
