"""Keras' LSTM with a hand-written gradient, for training on CPUs under XLA.

Same layer, same weights, same math (Keras' gate order i, f, g, o; tanh and sigmoid), so what is
learned is unchanged up to float rounding (tests/test_fused_lstm.py). What differs is how the
backward pass is laid out. TensorFlow's automatic gradient of Keras' time loop does three matmuls
per time step (the gradients of the recurrent state, the recurrent kernel and the input kernel),
each too small to keep a core busy. This gradient keeps only the one the recurrence needs
(dz @ recurrent_kernel^T) in its loop, and computes the kernels' gradients after the loop as two
large matmuls over all time steps at once, as cuDNN does on a GPU. On the rows LSTM (28 steps x 28
features, 128 units, two concurrent halves) the gradient ran 1.10-1.17x as fast as Keras' own at
batch 128 and 1.63x at batch 32 on one CPU, 1.06x at batch 128 on a faster AVX-512 one
(docs/performance.md).

Only the training stage uses it, by replacing `inner_loop` on the layer instances it compiles
(`use_fused_lstm`, where `pipeline.training.cpu.policy` says), so a saved model is a plain Keras
LSTM that loads without this package.
"""

from __future__ import annotations

import types


def lstm_sequence(x, h0, c0, kernel, recurrent_kernel, bias):
    """Run an LSTM over x (batch, time, features) from state (h0, c0).

    Returns (outputs (batch, time, units), last cell state); the gradient is hand-written.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def run(x, h0, c0, w, u, b):
        xt = tf.transpose(x, [1, 0, 2])  # time-major: the loop slices one step at a time
        steps = tf.shape(xt)[0]

        def step(t, h, c, *stores):
            # x_t @ w stays in the loop: one (batch*time) x features matmul before it measured
            # slower under XLA (features=28 is a poor shape for a large matmul).
            z = tf.matmul(xt[t], w) + b + tf.matmul(h, u)
            i, f, g, o = tf.split(z, 4, axis=-1)
            i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
            c = f * c + i * g
            h = o * tf.tanh(c)
            kept = (i, f, g, o, c, h)
            return (t + 1, h, c) + tuple(s.write(t, v) for s, v in zip(stores, kept, strict=True))

        def store():
            return tf.TensorArray(x.dtype, size=steps)

        loop = tf.while_loop(
            lambda t, *_: t < steps, step, (0, h0, c0) + tuple(store() for _ in range(6))
        )
        c_last = loop[2]
        gi, gf, gg, go, cs, hs = (s.stack() for s in loop[3:])

        def gradient(d_outputs, d_c_last):
            # TensorFlow may pass None for an output nothing downstream uses.
            d_outputs = (
                tf.zeros_like(hs) if d_outputs is None else tf.transpose(d_outputs, [1, 0, 2])
            )
            if d_c_last is None:
                d_c_last = tf.zeros_like(c0)
            c_prev = tf.concat([c0[None], cs[:-1]], 0)
            h_prev = tf.concat([h0[None], hs[:-1]], 0)
            u_t = tf.transpose(u)

            def back(k, dh_next, dc_next, d_z):
                t = steps - 1 - k
                i, f, g, o = gi[t], gf[t], gg[t], go[t]
                tanh_c = tf.tanh(cs[t])
                dh = d_outputs[t] + dh_next
                dc = dc_next + dh * o * (1 - tanh_c * tanh_c)
                dz = tf.concat(
                    [
                        dc * g * i * (1 - i),
                        dc * c_prev[t] * f * (1 - f),
                        dc * i * (1 - g * g),
                        dh * tanh_c * o * (1 - o),
                    ],
                    axis=-1,
                )
                return k + 1, tf.matmul(dz, u_t), dc * f, d_z.write(t, dz)

            _, dh0, dc0, d_z = tf.while_loop(
                lambda k, *_: k < steps, back, (0, tf.zeros_like(h0), d_c_last, store())
            )
            dz = tf.reshape(d_z.stack(), [-1, tf.shape(u)[1]])  # (time*batch, 4*units)
            dw = tf.matmul(tf.reshape(xt, [-1, tf.shape(w)[0]]), dz, transpose_a=True)
            du = tf.matmul(tf.reshape(h_prev, [-1, tf.shape(u)[0]]), dz, transpose_a=True)
            dx = tf.reshape(tf.matmul(dz, w, transpose_b=True), tf.shape(xt))
            # XLA drops dx where nothing needs it (the first layer's input is data).
            return tf.transpose(dx, [1, 0, 2]), dh0, dc0, dw, du, tf.reduce_sum(dz, 0)

        return (tf.transpose(hs, [1, 0, 2]), c_last), gradient

    return run(x, h0, c0, kernel, recurrent_kernel, bias)


def fusable(layer) -> bool:
    """Whether the hand-written gradient computes exactly what `layer`'s own loop does: the
    standard cell (cuDNN's conditions, whatever `use_cudnn` says) in float32."""
    import keras

    from pipeline.models import CUDNN_NEEDS

    if not isinstance(layer, keras.layers.LSTM):
        return False
    config = layer.get_config()
    standard = all(config.get(key, want) == want for key, want in CUDNN_NEEDS.items())
    return standard and layer.cell.compute_dtype == "float32"


def fused_inner_loop(self, sequences, initial_state, mask, training=False):
    """`keras.layers.LSTM.inner_loop` on `lstm_sequence`; falls back to Keras' loop for masks
    and for input dropout in training, which the hand-written loop does not apply."""
    import keras
    import tensorflow as tf

    if mask is not None or (training and self.cell.dropout):
        return keras.layers.LSTM.inner_loop(self, sequences, initial_state, mask, training)
    if self.go_backwards:  # Keras reads the steps in reverse and returns them in that order
        sequences = tf.reverse(sequences, [1])
    cell = self.cell
    outputs, c_last = lstm_sequence(
        sequences,
        initial_state[0],
        initial_state[1],
        cell.kernel.value,
        cell.recurrent_kernel.value,
        cell.bias.value,
    )
    last = outputs[:, -1]
    return last, outputs, [last, c_last]


def use_fused_lstm(model, max_units: int | None = None) -> list[str]:
    """Give every eligible LSTM layer of `model` (inside Bidirectional too) of at most
    `max_units` units (None: any) the hand-written gradient; returns their names."""
    from pipeline.models import recurrent_layers

    fused = []
    for layer in recurrent_layers(model):
        if fusable(layer) and (max_units is None or layer.units <= max_units):
            layer.inner_loop = types.MethodType(fused_inner_loop, layer)
            fused.append(layer.name)
    return fused
