"""What a run ran on: GPUs, software versions, host, git state and training setup, as run tags.

Everything here is read-only and must never fail a run: a probe that cannot answer (no GPU, no
NVIDIA library, no git) leaves its tags out or reports zero, quietly.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

# The checkout the code runs from, for its commit; an installed wheel has none (no git tags).
CODE_ROOT = Path(__file__).resolve().parents[2]

# A device source returns (driver version or None, one dict per GPU with name, memory_total_mb,
# compute_capability). Tests pass a fake one; real runs use NVML, then TensorFlow.
DeviceSource = Callable[[], tuple[str | None, list[dict]]]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)  # older NVML returns bytes


def nvml_devices() -> tuple[str | None, list[dict]]:
    """GPUs as NVIDIA's management library sees them; (None, []) without a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library or no driver: a CPU machine, not an error
        return None, []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            devices.append(
                {
                    "name": _text(pynvml.nvmlDeviceGetName(handle)),
                    "memory_total_mb": pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20,
                    "compute_capability": f"{major}.{minor}",
                }
            )
        return _text(driver), devices
    except Exception:  # noqa: BLE001 - a half-working driver still must not fail the run
        return None, []
    finally:
        pynvml.nvmlShutdown()


def tensorflow_devices() -> tuple[str | None, list[dict]]:
    """GPUs TensorFlow will use, with the details it reports (no memory size, no driver)."""
    import tensorflow as tf

    devices = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        devices.append(
            {
                "name": details.get("device_name", gpu.name),
                "compute_capability": ".".join(map(str, capability)) if capability else None,
            }
        )
    return None, devices


def _ask(source: DeviceSource) -> tuple[str | None, list[dict]]:
    try:
        return source()
    except Exception:  # noqa: BLE001 - a failing probe means "this source cannot tell"
        return None, []


def gpu_tags(
    sources: tuple[DeviceSource, ...] = (nvml_devices, tensorflow_devices),
    tensorflow_view: DeviceSource = tensorflow_devices,
) -> dict:
    """`gpu.count`, `gpu.driver` and per-device tags from the first source that sees a GPU.

    `gpu.tensorflow_count` is how many of them TensorFlow can use: NVML seeing a GPU that
    TensorFlow does not (a CPU-only build, missing CUDA libraries) means training on the CPU.
    """
    tags: dict = {"gpu.count": 0}
    for source in sources:
        driver, devices = _ask(source)
        if devices:
            tags = {"gpu.count": len(devices), "gpu.source": source.__name__}
            if driver:
                tags["gpu.driver"] = driver
            for i, device in enumerate(devices):
                tags.update({f"gpu.{i}.{k}": v for k, v in device.items() if v is not None})
            break
    if tags["gpu.count"]:
        tags["gpu.tensorflow_count"] = len(_ask(tensorflow_view)[1])
        if not tags["gpu.tensorflow_count"]:
            warnings.warn(
                f"{tags['gpu.count']} GPU(s) found, but TensorFlow sees none: training runs on "
                'the CPU. Install the CUDA libraries with `pip install -e ".[gpu]"`.',
                RuntimeWarning,
                stacklevel=2,
            )
    return tags


def software_tags() -> dict:
    """Versions of the stack, and the CUDA/cuDNN TensorFlow was built against."""
    from importlib.metadata import version

    import keras
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    return {
        "version.python": platform.python_version(),
        "version.tensorflow": tf.__version__,
        "version.keras": keras.__version__,
        "version.mlflow": version("mlflow"),
        "build.cuda": build.get("cuda_version", "none"),  # "none": a CPU-only TensorFlow
        "build.cudnn": build.get("cudnn_version", "none"),
    }


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name, with "AVX-512" where it has those vector units: CPUs of one model
    name can differ in them, and with them the speed of every matmul (docs/performance.md)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:  # no /proc (macOS, Windows)
        lines = []
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    name = name or platform.processor() or platform.machine()
    return f"{name}, AVX-512" if "avx512f" in flags else name


def host_tags() -> dict:
    tags = {
        "host.name": socket.gethostname(),
        "host.platform": platform.platform(),
        "host.cpu": cpu_model(),
        "host.cpu_count": os.cpu_count(),
    }
    try:
        import psutil

        tags["host.memory_total_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return tags


def git_tags(root: Path = CODE_ROOT) -> dict:
    """The checkout's commit and whether it had uncommitted changes; {} outside a checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # Untracked files count: a new, uncommitted module changes what ran. Ignored ones do not.
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git.commit": commit, "git.dirty": str(dirty).lower()}


def warn_off_cudnn(tags: dict) -> list[str]:
    """On a GPU, warn once per recurrent layer that will not run on the cuDNN kernel."""
    if not tags.get("gpu.count"):
        return []  # on CPU there is no fast kernel to lose
    off = [f"{k.removeprefix('cudnn.')}: {v}" for k, v in tags.items() if k.startswith("cudnn.")]
    off = [line for line in off if ": eligible" not in line]
    for line in off:
        warnings.warn(
            f"Recurrent layer {line}. It will run the slower generic kernel on this GPU.",
            RuntimeWarning,
            stacklevel=2,
        )
    return off


def run_tags(sources=(nvml_devices, tensorflow_devices), extra: dict | None = None) -> dict:
    """All environment tags for one run, plus `extra` (the training setup), as strings
    (MLflow's tag type); warns about layers off the cuDNN kernel on a GPU."""
    tags = {**gpu_tags(sources), **software_tags(), **host_tags(), **git_tags(), **(extra or {})}
    warn_off_cudnn(tags)
    return {k: str(v) for k, v in tags.items()}
