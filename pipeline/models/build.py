"""Model stage: `build_model(cfg.model, spec)` -> an uncompiled keras.Model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import ModelConfig
from pipeline.config.errors import ConfigError
from pipeline.models.levels import assemble

if TYPE_CHECKING:  # the data stage's output; the model stage only reads its fields
    from pipeline.data import DataSpec


def cell_classes() -> dict:
    """The recurrent layers users can pick with `model.cell`."""
    from keras import layers

    return {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}


def recurrent_layer(cfg: ModelConfig, return_sequences: bool, name: str):
    """One recurrent layer; only LSTM/GRU take a recurrent (gate) activation."""
    from keras import layers

    kwargs = dict(
        units=cfg.units,
        activation=cfg.activation,
        dropout=cfg.dropout,
        recurrent_dropout=cfg.recurrent_dropout,
        unroll=cfg.unroll,
        return_sequences=return_sequences,
    )
    if cfg.cell != "simple_rnn":
        kwargs["recurrent_activation"] = cfg.recurrent_activation
    layer = cell_classes()[cfg.cell](**kwargs, name=name)
    if cfg.bidirectional:
        layer = layers.Bidirectional(layer, name=f"bi_{name}")
    return layer


def pooling_layer(pooling: str):
    """What `model.pooling` puts after the last recurrent layer's sequence output (None for
    "last": that layer then returns its final state itself). Both honour the padding mask."""
    from keras import layers

    from pipeline.models.layers import AttentionPooling

    if pooling == "mean":
        return layers.GlobalAveragePooling1D(name="mean_pooling")  # mean over unmasked steps
    if pooling == "attention":
        return AttentionPooling(name="attention_pooling")
    return None


def build_model(cfg: ModelConfig, spec: DataSpec):
    """Stack `num_layers` recurrent layers, the pooling over steps (`model.pooling`), the dense
    head and the task's output layer.

    Classification ends in logits (pair with from_logits=True losses); regression is linear.
    The output layer is float32 so mixed precision keeps a numerically safe loss.
    """
    import keras
    from keras import layers

    sequence_out = cfg.return_sequences or spec.sequence_output
    if cfg.pooling != "last" and spec.sequence_output:
        # ModelConfig refuses it with `model.return_sequences=true`; only the data knows this.
        raise ConfigError(
            f"`model.pooling={cfg.pooling}` pools the steps into one output, but this data has "
            "a target at every step (`data.target_mode=sequence`). Set `model.pooling=last`, "
            "or `data.target_mode=next` to predict after the window."
        )
    pooled = cfg.pooling != "last"  # the last recurrent layer then returns every step
    if spec.vocabulary_size:  # token ids in, padded at the end with 0: the embedding masks it
        stack = [
            keras.Input(shape=spec.input_shape, dtype="int32", name="tokens"),
            layers.Embedding(
                spec.vocabulary_size, cfg.embedding_dim, mask_zero=True, name="embedding"
            ),
        ]
    else:
        stack = [keras.Input(shape=spec.input_shape, name="sequence")]
    if spec.input_scale is not None:  # raw pixels in, so the logged model takes them
        stack.append(layers.Rescaling(spec.input_scale, name="input_scale"))
    if spec.mask_value is not None:  # padded at the end: LSTM/GRU keep the cuDNN kernel
        stack.append(layers.Masking(mask_value=spec.mask_value, name="padding_mask"))
    if spec.channel_mean is not None:  # the model takes raw values; padding stays masked
        stack.append(
            layers.Normalization(
                mean=list(spec.channel_mean), variance=list(spec.channel_variance), name="scale"
            )
        )
    if cfg.conv_filters and spec.vocabulary_size:
        raise ConfigError(
            f"`model.conv_filters={list(cfg.conv_filters)}` would read the padding of every text "
            "shorter than the longest (Keras' Conv1D drops the padding mask). Set "
            "`model.conv_filters=[]` for text."
        )
    if cfg.conv_filters and spec.mask_value is not None:
        # Keras' Conv1D drops the mask, so the recurrent layers would read the padding.
        steps = spec.input_shape[0]  # None when batches are bucketed by length
        how = f"{steps} steps at most" if steps else "bucketed by length"
        raise ConfigError(
            f"`model.conv_filters={list(cfg.conv_filters)}` needs sequences of one length, and "
            f"these vary ({how}, padded and masked). Set "
            "`model.conv_filters=[]`, or make them equal with `data.max_length` no longer than "
            "the shortest."
        )
    for i, filters in enumerate(cfg.conv_filters):  # LSTM-FCN's convolution block
        stack.append(layers.Conv1D(filters, cfg.conv_kernel, padding="same", name=f"conv_{i}"))
        stack.append(layers.BatchNormalization(name=f"conv_norm_{i}"))
        stack.append(layers.Activation("relu", name=f"conv_relu_{i}"))
    for i in range(cfg.num_layers):
        last = i == cfg.num_layers - 1
        every_step = sequence_out or pooled or not last
        stack.append(recurrent_layer(cfg, return_sequences=every_step, name=f"{cfg.cell}_{i}"))
    if pooled:
        stack.append(pooling_layer(cfg.pooling))
    for i, units in enumerate(cfg.head_units):
        stack.append(layers.Dense(units, activation=cfg.head_activation, name=f"head_{i}"))
        if cfg.head_dropout > 0:
            stack.append(layers.Dropout(cfg.head_dropout, name=f"head_dropout_{i}"))
    name = "logits" if spec.task == "classification" else "prediction"
    stack.append(layers.Dense(spec.output_size, dtype="float32", name=name))
    return assemble(stack, spec, name=f"{cfg.cell}_x{cfg.num_layers}")
