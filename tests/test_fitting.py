"""Training stage: its speed defaults (XLA, steps_per_execution, tf.data) leave what is learned
exactly as plain Keras learns it, given the same samples in the same order."""

from __future__ import annotations

import numpy as np
from conftest import make_cfg, on_cpu

from pipeline.config import ModelConfig, TrainerConfig, validate
from pipeline.data import DataSpec, to_tf_dataset
from pipeline.fitting import compile_model
from pipeline.models import build_model
from pipeline.train import seed_everything

SPEC = DataSpec(input_shape=(12, 3), task="classification", output_size=4)


def arrays(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *SPEC.input_shape)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int32) + 2 * (x[:, -1, 1] > 0)
    return x, y.astype(np.int32)


def fresh_model():
    import keras

    keras.utils.set_random_seed(7)
    return build_model(ModelConfig(cell="gru", units=8), SPEC)


def test_pipeline_defaults_learn_what_plain_keras_learns():
    import keras

    seed_everything(validate(make_cfg()))  # a default run's process state, whatever ran before
    (x, y), val = arrays(320, 0), arrays(96, 1)
    plain = fresh_model()
    plain.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    a = plain.fit(x, y, batch_size=32, validation_data=val, epochs=3, shuffle=False, verbose=0)

    stage = fresh_model()
    trainer = TrainerConfig()  # the defaults: XLA on CPU, 32 steps per execution
    compile_model(stage, trainer, SPEC, learning_rate=1e-3, clipnorm=None)
    assert stage.steps_per_execution == 32
    assert stage.jit_compile is on_cpu()  # XLA, except for cuDNN layers on a GPU
    train_ds = to_tf_dataset(x, y, 32, shuffle=False, seed=0, cache=True)
    val_ds = to_tf_dataset(*val, 32, shuffle=False, seed=0, cache=True)
    b = stage.fit(train_ds, validation_data=val_ds, epochs=3, shuffle=False, verbose=0)

    # Per-epoch callbacks still see every epoch, and the numbers match up to float rounding.
    assert len(b.history["val_loss"]) == 3
    np.testing.assert_allclose(b.history["loss"], a.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(b.history["val_loss"], a.history["val_loss"], rtol=1e-4)
    assert b.history["val_accuracy"] == a.history["val_accuracy"]
    assert a.history["loss"][-1] < a.history["loss"][0]  # it trained: the check compares something
