"""Environment tags: the GPU path through a fake device source, the CPU path for real."""

from __future__ import annotations

import subprocess
import warnings

import pytest
from conftest import make_cfg

from pipeline.config import validate
from pipeline.data import DataSpec
from pipeline.models import build_model, cudnn_status
from pipeline.tracking import environment
from pipeline.training.devices import setup_tags


def two_h100s():
    """A device source as NVML would answer on a two-GPU machine."""
    device = {
        "name": "NVIDIA H100 80GB HBM3",
        "memory_total_mb": 81559,
        "compute_capability": "9.0",
    }
    return "550.54.15", [device, dict(device)]


def no_devices():
    return None, []


def broken():
    raise RuntimeError("NVML: driver/library version mismatch")


def test_gpu_tags_from_a_device_source():
    tags = environment.gpu_tags((two_h100s,), tensorflow_view=two_h100s)
    assert tags["gpu.count"] == 2 and tags["gpu.driver"] == "550.54.15"
    assert tags["gpu.tensorflow_count"] == 2
    assert tags["gpu.1.name"] == "NVIDIA H100 80GB HBM3"
    assert tags["gpu.0.memory_total_mb"] == 81559 and tags["gpu.0.compute_capability"] == "9.0"
    assert tags["gpu.source"] == "two_h100s"


def test_gpu_tags_fall_through_failing_and_empty_sources():
    assert environment.gpu_tags((broken, no_devices, two_h100s), two_h100s)["gpu.count"] == 2
    assert environment.gpu_tags((broken, no_devices)) == {"gpu.count": 0}


def test_gpu_that_tensorflow_cannot_use_is_tagged_and_warned():
    with pytest.warns(RuntimeWarning, match="TensorFlow sees none"):
        tags = environment.gpu_tags((two_h100s,), tensorflow_view=broken)
    assert tags["gpu.count"] == 2 and tags["gpu.tensorflow_count"] == 0


def gpus_on_this_machine() -> int:
    """The GPUs here, from a source the tags do not use: nvidia-smi, else TensorFlow."""
    import shutil

    import tensorflow as tf

    if shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        return sum(line.startswith("GPU ") for line in listing.splitlines())
    return len(tf.config.list_physical_devices("GPU"))


def test_this_machines_gpus_are_counted_quietly(capfd):
    # The real sources (NVML, then TensorFlow): as many GPUs as the machine has, and no error.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tags = environment.gpu_tags()
    assert tags["gpu.count"] == gpus_on_this_machine()
    assert "Traceback" not in capfd.readouterr().err


def model(**overrides):
    spec = DataSpec(input_shape=(8, 1), task="classification", output_size=3)
    settings = [
        f"model.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in overrides.items()
    ]
    cell = [f"model={overrides.get('cell', 'lstm')}"]
    return build_model(validate(make_cfg(*cell, "model.units=4", *settings)).model, spec)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"cell": "lstm"}, {"cudnn.lstm_0": "eligible"}),
        ({"cell": "gru", "num_layers": 2}, {"cudnn.gru_0": "eligible", "cudnn.gru_1": "eligible"}),
        (
            {"cell": "lstm", "recurrent_dropout": 0.2, "unroll": True},
            {"cudnn.lstm_0": "no: recurrent_dropout=0.2 (needs 0.0), unroll=True (needs False)"},
        ),
        (
            {"cell": "gru", "activation": "relu"},
            {"cudnn.gru_0": "no: activation='relu' (needs 'tanh')"},
        ),
        (
            {"cell": "simple_rnn", "num_layers": 1},
            {"cudnn.simple_rnn_0": "no: SimpleRNN has no cuDNN kernel"},
        ),
    ],
)
def test_cudnn_eligibility_per_recurrent_layer(overrides, expected):
    tags = setup_tags(model(**overrides))
    assert {k: v for k, v in tags.items() if k.startswith("cudnn.")} == expected
    assert tags["train.mixed_precision"] == "float32"


def test_bidirectional_layers_are_looked_into():
    compiled = model(cell="gru", bidirectional=True)
    compiled.compile(jit_compile=False)
    tags = setup_tags(compiled)
    assert sorted(k for k in tags if k.startswith("cudnn.")) == [
        "cudnn.backward_gru_0",
        "cudnn.forward_gru_0",
    ]
    assert tags["train.jit_compile"] == "false"


def test_gru_reset_after_false_is_off_cudnn():
    assert "reset_after=False" in cudnn_status("GRU", {"reset_after": False})
    assert cudnn_status("LSTM", {"use_cudnn": False}) == "no: use_cudnn=False"


def test_off_cudnn_layer_warns_only_on_gpu():
    tags = {
        "gpu.count": 1,
        "cudnn.lstm_0": "eligible",
        "cudnn.gru_1": "no: unroll=True (needs False)",
    }
    with pytest.warns(RuntimeWarning, match="gru_1: no: unroll=True"):
        assert environment.warn_off_cudnn(tags) == ["gru_1: no: unroll=True (needs False)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert environment.warn_off_cudnn({**tags, "gpu.count": 0}) == []


def test_run_tags_on_this_machine_are_strings_with_versions_and_git():
    tags = environment.run_tags(extra=setup_tags(model()))
    assert tags["gpu.count"] == str(gpus_on_this_machine())
    assert tags["cudnn.lstm_0"] == "eligible"
    assert all(isinstance(v, str) for v in tags.values())
    for key in ("version.tensorflow", "version.keras", "version.mlflow", "version.python"):
        assert tags[key][0].isdigit()
    assert {"build.cuda", "build.cudnn", "host.cpu", "host.cpu_count", "host.name"} <= set(tags)
    assert int(tags["host.cpu_count"]) >= 1 and float(tags["host.memory_total_gb"]) > 0
    assert len(tags["git.commit"]) == 40 and tags["git.dirty"] in ("true", "false")


def test_cpu_model_names_avx512_where_the_flags_have_it(tmp_path):
    info = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse2 avx2 {}\n"
    plain, wide = tmp_path / "plain", tmp_path / "wide"
    plain.write_text(info.format("fma"))
    wide.write_text(info.format("avx512f avx512bw"))
    assert environment.cpu_model(plain) == "Intel(R) Xeon(R) Processor"
    assert environment.cpu_model(wide) == "Intel(R) Xeon(R) Processor, AVX-512"
    assert environment.cpu_model(tmp_path / "absent")  # no /proc (macOS): platform's name


def test_git_tags_follow_the_checkout(tmp_path):
    assert environment.git_tags(tmp_path) == {}  # not a checkout: no git tags, no error

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = environment.git_tags(tmp_path)
    assert clean["git.dirty"] == "false" and len(clean["git.commit"]) == 40
    (tmp_path / "a.py").write_text("x = 2\n")
    assert environment.git_tags(tmp_path) == {**clean, "git.dirty": "true"}
