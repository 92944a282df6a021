"""`trainer.distribution=mirrored`: one model on several devices with tf.distribute's
MirroredStrategy, checked on the CPU split into two logical devices against one device.

The split has to happen before TensorFlow starts, so the runs go in a child process; both run
there, one after the other, on the same data and seed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, child_env, make_cfg, runs_in

CHILD = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from pipeline.training.run import run_training
from tests.conftest import make_cfg

out = {}
for distribution in ("none", "mirrored"):
    cfg = make_cfg(*sys.argv[2:], f"trainer.distribution={distribution}")
    result = run_training(cfg, f"{sys.argv[1]}/{distribution}")
    out[distribution] = {"metrics": result.metrics, "run_id": result.run_id}
print("RESULT " + json.dumps(out))
"""

# One batch holds the whole training split (360 examples), so the order tf.data shuffles them in,
# which differs under a strategy (its copy of the dataset draws its own reshuffle), cannot
# matter. Each replica takes half of it and their gradients are summed: plain SGD, whose steps
# scale with the gradient (Adam's would hide a gradient off by the number of replicas), then
# takes the steps of one device up to the order of float32 sums. Measured: under 1e-6 relative.
TOLERANCE = 1e-4


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(store, tmp_path):
    overrides = [
        *(
            "trainer=smoke",
            "trainer.epochs=3",
            "trainer.optimizer=sgd",
            "trainer.learning_rate=0.5",
        ),
        *("data.num_samples=500", "data.batch_size=360", "model=lstm", "model.units=16", "seed=3"),
    ]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), *overrides],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=600,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "Distribution: MirroredStrategy over 2 device(s): /cpu:0, /cpu:1" in child.stdout
    [line] = [x for x in child.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(line.removeprefix("RESULT "))
    one, two = out["none"]["metrics"], out["mirrored"]["metrics"]
    for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy"):
        assert two[key] == pytest.approx(one[key], rel=TOLERANCE), key
    runs = {run.info.run_id: run for run in runs_in(store)}
    mirrored = runs[out["mirrored"]["run_id"]].data.tags
    assert mirrored["train.distribution"] == "MirroredStrategy"
    assert mirrored["train.replicas"] == "2"
    assert mirrored["train.devices"] == "/cpu:0,/cpu:1"
    single = runs[out["none"]["run_id"]].data.tags
    assert (single["train.distribution"], single["train.replicas"]) == ("none", "1")
    assert single["train.devices"] == "/cpu:0"
    assert all(run.info.status == "FINISHED" for run in runs.values())


@pytest.mark.parametrize(
    "setting", ["trainer.jit_compile=true", "trainer.fused_lstm=true", "trainer.batch_splits=2"]
)
def test_mirrored_refuses_what_does_not_run_on_replicas(setting):
    from pipeline.config import ConfigError, validate

    with pytest.raises(ConfigError, match="trainer.distribution=mirrored"):
        validate(make_cfg("trainer.distribution=mirrored", setting))


def test_unknown_distribution_is_refused():
    from pipeline.config import ConfigError, validate

    with pytest.raises(ConfigError, match="trainer.distribution"):
        validate(make_cfg("trainer.distribution=tpu"))
