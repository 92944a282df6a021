"""The package's shape: stages import one way, no module imports one that imports it back, MLflow's
public API only, and a built wheel that trains from an empty directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def test_import_linter_layers_contract_is_kept():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_no_module_imports_one_that_imports_it_back():
    import grimp

    graph = grimp.build_graph("pipeline", exclude_type_checking_imports=True)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(" -> ".join((module, *chain)))
    assert cycles == []


def test_only_mlflows_public_names_are_used():
    private = re.compile(r"from mlflow[a-z_.]* import .*\b_[a-z]|mlflow\.[a-z_.]*\._")
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "pipeline").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert hits == []


@pytest.mark.slow
def test_a_built_wheel_trains_a_smoke_run_from_an_empty_directory(tmp_path):
    """`pip wheel .`, installed into a fresh virtual environment (borrowing this one's
    TensorFlow and friends), runs `python -m pipeline.train trainer=smoke` outside the clone
    and logs to ./mlruns there."""
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w"]
    subprocess.run([*build, str(wheels), str(ROOT)], check=True, capture_output=True, timeout=600)
    [wheel] = wheels.glob("rnn_pipeline-*.whl")
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300
    )
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    where = subprocess.run(
        [str(python), "-c", "import pipeline; print(pipeline.__file__)"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(venv) in where.stdout, where.stdout  # the wheel's copy, not this checkout
    result = subprocess.run(
        [str(python), "-m", "pipeline.train", "trainer=smoke", "model.units=8"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (empty / "mlruns" / "mlflow.db").is_file()
    assert "MLflow run" in result.stdout
