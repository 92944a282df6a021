"""Training stage end to end: one FINISHED MLflow run per train(), presets, and bad input."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import default_batch_splits, make_cfg, on_cpu, run_cli, runs_in
from test_environment import gpus_on_this_machine

from pipeline.train import train


def artifact_paths(uri, run_id, folder=None):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    return {a.path for a in client.list_artifacts(run_id, folder)}


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_train_classification_logs_one_finished_run(store, tmp_path):
    import keras
    import mlflow

    metrics = train(make_cfg("trainer=smoke", "model.units=16"), output_dir=tmp_path / "out")
    assert {"test_accuracy", "test_loss", "val_accuracy", "epochs_trained"} <= set(metrics)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["epochs_trained"] == 1
    [run] = runs_in(store)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.units"] == "16" and run.data.params["data.name"] == "mnist1d"
    assert run.data.params["trainer.epochs"] == "1"
    assert {"accuracy", "val_accuracy", "loss", "learning_rate", "test_accuracy"} <= set(
        run.data.metrics
    )
    history = mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [0]
    assert {"config.yaml", "model.keras"} <= artifact_paths(store, run.info.run_id)
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="model.keras", tracking_uri=store
    )
    assert keras.saving.load_model(local).count_params() == metrics["num_params"]


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_every_epoch_is_logged_and_xla_is_on_by_default_on_cpu(store, tmp_path):
    import mlflow

    cfg = make_cfg(
        "trainer.epochs=3",
        "trainer.limit_train_batches=2",
        "trainer.limit_eval_batches=1",
        "trainer.early_stopping_patience=null",
        "model.units=8",
        "tracking.log_model=false",
    )
    metrics = train(cfg, output_dir=tmp_path / "out")
    [run] = runs_in(store)
    history = mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [0, 1, 2]  # the worker thread wrote them all
    # No early stopping: the final val scores are the last epoch's, not a second evaluation.
    last = max(history, key=lambda m: m.step)
    assert metrics["val_loss"] == pytest.approx(last.value, rel=1e-6)
    assert run.data.tags["train.jit_compile"] == str(on_cpu()).lower()
    assert run.data.tags["train.batch_splits"] == str(default_batch_splits())
    assert run.data.tags["train.fused_lstm"] == ("lstm_0" if on_cpu() else "none")  # 8 units


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [((), True), (("trainer.deterministic=true",), False), (("trainer.jit_compile=false",), False)],
)
def test_xla_default_on_cpu(overrides, expected):
    from pipeline.config import validate
    from pipeline.training.compile import resolve_jit

    if not on_cpu() and not overrides:
        expected = "auto"  # on a GPU, Keras decides (off for cuDNN layers)
    assert resolve_jit(validate(make_cfg(*overrides)).trainer) == expected


def test_a_runs_process_settings_do_not_carry_into_the_next_run():
    """Op determinism and the dtype policy are per process; a deterministic, mixed-precision
    run must not leave the next run in the same process (a sweep, a notebook) without XLA or
    in float16."""
    import keras
    from tensorflow.python.framework.config import is_op_determinism_enabled

    from pipeline.config import validate
    from pipeline.data import DataSpec
    from pipeline.models import build_model
    from pipeline.training.compile import compile_model
    from pipeline.training.devices import seed_everything

    seed_everything(
        validate(make_cfg("trainer.deterministic=true", "trainer.mixed_precision=mixed_float16"))
    )
    assert is_op_determinism_enabled()
    assert keras.mixed_precision.global_policy().name == "mixed_float16"

    conf = validate(make_cfg("model.units=4"))
    seed_everything(conf)
    assert not is_op_determinism_enabled()
    assert keras.mixed_precision.global_policy().name == "float32"
    spec = DataSpec((40, 1), "classification", 10)
    model = build_model(conf.model, spec)
    compile_model(model, conf.trainer, spec, learning_rate=1e-3, clipnorm=None)
    # Keras would have turned XLA off under op determinism (on a GPU it is off for cuDNN layers).
    assert model.jit_compile is on_cpu()


@pytest.mark.slow  # 10-15 s of training: out of the fast tier
def test_a_cold_data_cache_trains_the_same_model_as_a_warm_one(store, tmp_path):
    """Generating MNIST-1D draws from NumPy's global generator and loading the cached arrays
    does not; the first run on a machine must still match every later one with its seed (3:
    with the default seed, 0, the two happened to agree even before the reseed)."""
    overrides = [
        "trainer=smoke",
        "model.units=16",
        "seed=3",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]
    cold = train(make_cfg(*overrides), tmp_path / "cold")
    assert list((tmp_path / "cache").glob("*.npz"))  # the first run generated and cached it
    warm = train(make_cfg(*overrides), tmp_path / "warm")
    for key in ("val_loss", "test_loss"):
        assert warm[key] == cold[key], key


@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_train_regression_reports_rmse(store, tmp_path):
    metrics = train(
        make_cfg("trainer=smoke", "data=sunspots", "model=gru", "model.units=8"), tmp_path
    )
    assert {"test_rmse", "test_mae", "val_loss"} <= set(metrics)
    [run] = runs_in(store)
    assert run.data.tags["task"] == "regression" and run.info.status == "FINISHED"
    assert "plots/predicted_vs_actual.png" in artifact_paths(store, run.info.run_id, "plots")


@pytest.mark.slow  # 10-15 s of training: out of the fast tier
def test_early_stopping_restores_the_best_epoch(store, tmp_path):
    import mlflow

    metrics = train(
        make_cfg(
            "data=sine",
            "model.units=4",
            "trainer.epochs=8",
            "trainer.early_stopping_patience=2",
            "trainer.lr_plateau_patience=null",
            "trainer.learning_rate=0.05",  # large enough for val_loss to bounce
        ),
        tmp_path,
    )
    [run] = runs_in(store)
    val = [
        m.value for m in mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "val_loss")
    ]
    best = min(range(len(val)), key=val.__getitem__)
    assert metrics["best_epoch"] == best and metrics["epochs_trained"] == len(val)
    # The final numbers are those of the best epoch's weights, not of the last epoch's.
    assert metrics["val_loss"] == pytest.approx(val[best], rel=1e-4)


@pytest.mark.parametrize(
    "preset",
    [
        "toy_simple_rnn",
        "sine_simple_rnn",
        pytest.param("sequence_lstm", marks=pytest.mark.slow),  # 7-17 s each: out of the fast tier
        pytest.param("mnist_rows_lstm", marks=pytest.mark.slow),
        pytest.param("mnist_two_lstm", marks=pytest.mark.slow),
    ],
)
@pytest.mark.slow  # a training run of 6-12 s: out of the fast tier
def test_experiment_presets_run(store, tmp_path, preset, tfds_mock):
    overrides = [
        f"experiment={preset}",
        "trainer.epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_eval_batches=1",
        "trainer.early_stopping_patience=null",
    ]
    with tfds_mock(num_examples=64):  # MNIST presets read mock images, offline
        metrics = train(make_cfg(*overrides), tmp_path)
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and metrics["epochs_trained"] == 1


@pytest.mark.slow
def test_cli_smoke_run_end_to_end(store, tmp_path):
    cli = ("trainer=smoke", "model=gru", "model.units=8")
    # As from a shell that never set it (importing pipeline here set it in this process).
    result = run_cli(*cli, cwd=tmp_path, env_remove=("TF_CPP_MIN_LOG_LEVEL",))
    assert result.returncode == 0, result.stderr[-2000:]
    # A quiet console: one line naming the device, no TensorFlow C++ start-up lines (absl's
    # preamble, oneDNN, CUDA stubs, cuInit), no MLflow INFO lines.
    device = "Training on the CPU: no GPU found." if on_cpu() else "Training on GPU"
    assert result.stdout.startswith(device)
    noise = re.compile(
        r"absl::InitializeLog|oneDNN|cudart_stub|cuInit|^[IWE]\d{4} |INFO mlflow", re.M
    )
    assert not noise.search(result.stdout + result.stderr), result.stderr[-2000:]
    assert "test" in result.stdout and "accuracy=" in result.stdout
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and run.data.params["model.cell"] == "gru"
    assert {"test_accuracy", "val_accuracy"} <= set(run.data.metrics)
    assert "model.keras" in artifact_paths(store, run.info.run_id)
    # Hydra wrote the run folder under the working directory it was started from.
    assert list((tmp_path / "outputs").glob("*/*/.hydra/config.yaml"))


def test_smoke_run_is_fully_tracked(store, tmp_path):
    """The issue's acceptance run: tags, system metrics, lineage, a loadable model, pictures."""
    import keras
    import mlflow
    import numpy as np

    cfg = make_cfg(
        "trainer=smoke",
        "model.units=16",
        "tracking.system_metrics_interval=0.5",
        "tracking.registered_model_name=rnn-smoke",
    )
    train(cfg, output_dir=tmp_path / "out")
    [run] = runs_in(store)
    run_id, tags = run.info.run_id, run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["gpu.count"] == str(gpus_on_this_machine()) and tags["cudnn.lstm_0"] == "eligible"
    assert tags["process.pid"] == str(os.getpid()) and tags["process.host"] == tags["host.name"]
    assert {
        "version.tensorflow",
        "build.cuda",
        "host.cpu",
        "git.commit",
        "train.jit_compile",
    } <= set(tags)
    assert "system/cpu_utilization_percentage" in run.data.metrics

    inputs = {
        {t.key: t.value for t in i.tags}["mlflow.data.context"]: i.dataset
        for i in run.inputs.dataset_inputs
    }
    assert sorted(inputs) == ["test", "train", "val"]
    assert inputs["train"].name == "mnist1d-train" and len(inputs["train"].digest) == 32
    assert "mnist1d.data.make_dataset" in inputs["train"].source

    client = mlflow.MlflowClient(store)
    top = artifact_paths(store, run_id)
    assert {"config.yaml", "model.keras", "model_summary.txt"} <= top
    plots = artifact_paths(store, run_id, "plots")
    assert plots == {"plots/learning_curves.png", "plots/confusion_matrix.png"}
    png = client.download_artifacts(run_id, "plots/confusion_matrix.png", str(tmp_path))
    assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert "lstm_0" in mlflow.artifacts.load_text(f"runs:/{run_id}/model_summary.txt")
    assert artifact_paths(store, run_id, "checkpoints") == {"checkpoints/best.keras"}

    mlflow.set_tracking_uri(store)
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    final = keras.saving.load_model(tmp_path / "out" / "model.keras")  # plain Keras loads it
    x = pyfunc.input_example
    assert x.shape == (5, 40, 1)
    answer = pyfunc.predict(x)  # labels and each class's probability, from raw inputs
    probabilities = final.predict(x, verbose=0)
    assert list(answer.columns) == ["row", "label", *(f"p_{i}" for i in range(10))]
    np.testing.assert_allclose(answer.filter(like="p_"), probabilities, rtol=1e-5)
    assert answer.label.tolist() == [str(i) for i in probabilities.argmax(axis=-1)]
    assert artifact_paths(store, run_id, "predictions") == {"predictions/test.csv"}
    [version] = client.search_model_versions("name='rnn-smoke'")
    assert version.run_id == run_id and int(version.version) == 1


@pytest.mark.slow
def test_sigterm_mid_training_leaves_run_killed(store, tmp_path):
    """A real SIGTERM to `python -m pipeline.train` between epochs: KILLED, non-zero exit."""
    import signal

    from conftest import sigterm_after

    args = [
        "model.units=8",
        "trainer.epochs=1000",  # far more than it will get to run
        "trainer.limit_train_batches=2",
        "trainer.limit_eval_batches=1",
        "trainer.early_stopping_patience=null",
        "trainer.verbose=2",  # one line per epoch, to know training is under way
    ]
    result = sigterm_after(args, tmp_path, "Epoch 3/")  # two epochs done: mid-training
    returncode, stderr = result.returncode, result.stderr
    assert returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "KILLED" in stderr and "Traceback" not in stderr
    [run] = runs_in(store)
    assert run.info.status == "KILLED"
    assert run.data.tags["status_reason"] == "interrupted (Ctrl-C or SIGTERM)"
    # Epochs finished before the signal were logged (MLflow's async queue flushed on the way out).
    import mlflow

    history = mlflow.MlflowClient(store).get_metric_history(run.info.run_id, "loss")
    assert len(history) >= 2 and "test_accuracy" not in run.data.metrics
