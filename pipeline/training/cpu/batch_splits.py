"""Training steps that split each batch into parts whose gradients are computed concurrently.

On a CPU, one XLA-compiled RNN training step leaves a second core mostly idle: its matmuls are too
small to share well and the loop over time steps is sequential. Splitting the batch into parts,
each part's forward and backward pass one XLA call, lets TensorFlow run those calls side by side
(one per core), after which one more XLA call averages the parts' gradients, weighted by their
sizes, and applies them. For a mean-over-the-batch loss (Keras' default reduction) that is the
whole batch's gradient, so what is learned is unchanged up to float rounding; only the order of
the sums differs (scripts/bench_throughput.py, tests/test_fitting.py). When it is used is
`pipeline.training.cpu.policy`'s decision.
"""

from __future__ import annotations

# Layer settings that make the forward pass draw random numbers; their seed state is one variable
# per layer, which concurrent parts would read and advance together. Nested configs are searched
# too, so a wrapped layer counts; a false match (an initializer's stddev) only keeps whole batches.
_RANDOM_SETTINGS = ("dropout", "recurrent_dropout", "rate", "stddev")


def draws_random_numbers(model) -> bool:
    """Whether any layer of `model` uses randomness in training (dropout, noise)."""

    def random(config) -> bool:
        if isinstance(config, dict):
            return any(
                (key in _RANDOM_SETTINGS and isinstance(value, int | float) and value > 0)
                or random(value)
                for key, value in config.items()
            )
        if isinstance(config, list | tuple):
            return any(random(value) for value in config)
        return False

    return any(random(layer.get_config()) for layer in model.layers)


def use_batch_splits(model, parts: int) -> None:
    """Make `model.fit` compute each training batch's gradient as `parts` concurrent XLA calls.

    The compiled model keeps `jit_compile=True` for evaluation and prediction; only the training
    function is built without an enclosing XLA cluster, since one cluster would run the parts one
    after another.
    """
    import keras
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def part_gradients(x, y, sample_weight):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
            )
            scaled = model.optimizer.scale_loss(loss)
        return tape.gradient(scaled, model.trainable_variables), loss, y_pred

    @tf.function(jit_compile=True)
    def apply_parts(results, weights, n, x, y, sample_weight):
        grads = [
            tf.add_n([w * g for w, g in zip(weights, part, strict=True)])
            for part in zip(*(r[0] for r in results), strict=True)
        ]
        model.optimizer.apply(grads, model.trainable_variables)
        loss = tf.add_n([w * r[1] for w, r in zip(weights, results, strict=True)])
        for metric in model.metrics:
            if metric.name == "loss":  # Keras' own loss tracker: a mean over samples
                metric.update_state(loss, sample_weight=n)
        y_pred = keras.tree.map_structure(lambda *p: tf.concat(p, axis=0), *(r[2] for r in results))
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def train_step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        n = tf.shape(keras.tree.flatten(x)[0])[0]
        # Sizes differ by at most one; a part of a batch smaller than `parts` is empty, and
        # its loss (0/0, which Keras reduces to 0) gets weight 0.
        sizes = tf.stack([(n + i) // parts for i in range(parts)])
        weights = [tf.cast(s, "float32") / tf.cast(n, "float32") for s in tf.unstack(sizes)]

        def parts_of(t):  # `parts` structures like t, or Nones
            if t is None:
                return [None] * parts
            leaves = [tf.split(leaf, sizes, num=parts) for leaf in keras.tree.flatten(t)]
            return [keras.tree.pack_sequence_as(t, [s[i] for s in leaves]) for i in range(parts)]

        split = zip(parts_of(x), parts_of(y), parts_of(sample_weight), strict=True)
        results = [part_gradients(*part) for part in split]
        return apply_parts(results, weights, n, x, y, sample_weight)

    keras_make_train_function = model.make_train_function

    def make_train_function(force=False):
        if model.train_function is not None and not force:
            return model.train_function
        jit, model.jit_compile = model.jit_compile, False
        try:
            return keras_make_train_function(force)
        finally:
            model.jit_compile = jit

    model.train_step = train_step
    model.make_train_function = make_train_function
