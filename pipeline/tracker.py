"""The run's MLflow side: `Tracker` opens one run, writes everything the run logs to it by its
id, and closes it. It lives in the training process, or in a tracking process of its own
(pipeline/sidecar.py) that takes the same calls across a pipe."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from pipeline.tracking import (
    STORE_DIR,
    default_tracking_uri,
    ensure_experiment,
    resumable_state,
)


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str


# Imported by the first start_run, log_model, log_inputs and system-metrics sampler of a
# process, and the pictures' drawing.
WARM_MODULES = (
    "IPython",
    "git",
    "matplotlib.backends.backend_agg",
    "matplotlib.figure",
    "pipeline.plots",
    "pipeline.mlflow_model",
    "mlflow.models",
    "mlflow.models.display_utils",
    "mlflow.models.utils",
    "mlflow.pyfunc",
    "mlflow.utils.environment",
    "mlflow.data.numpy_dataset",
    "mlflow.data.code_dataset_source",
    "mlflow.entities",
    "mlflow.system_metrics.system_metrics_monitor",
    "mlflow.store.artifact.local_artifact_repo",
)


class Tracker:
    """One MLflow run: opened, written to by its id, closed. Everything a run logs goes here.

    `train` holds one in its own process, or (pipeline/sidecar.py) in a tracking process of its
    own that imports MLflow and opens the store while the training process imports TensorFlow.
    Calls are safe from several threads (the epoch logger writes from its own).
    """

    # What the tracking process may be asked to do (pipeline/sidecar.py).
    CALLS = frozenset(
        "open log_params log_text log_metrics log_datasets log_artifact log_pictures log_model "
        "set_tags close resumable_state".split()
    )

    def __init__(self, uri: str):
        self.uri = uri
        self.info: RunInfo | None = None  # kept after close, for the caller to read
        self.is_open = False
        self._client = None

    def warm_up(self) -> None:
        """Import what a run's MLflow calls import, and open an existing store, ahead of time.

        MLflow imports much on first use (start_run alone pulls in IPython, through its
        Databricks checks, and its tracing provider): in the tracking process all of it
        happens while the training process imports TensorFlow.
        """
        import mlflow

        from pipeline.store import sqlite_path, store_lock

        self.import_ahead()
        mlflow.set_tracking_uri(self.uri)
        db = sqlite_path(self.uri)
        if db is None or db.exists():  # never create a store for a run that may not start
            with store_lock(self.uri):
                self._client = mlflow.MlflowClient(self.uri)

    def import_ahead(self) -> None:
        """Import what this process's MLflow calls and pictures will import (WARM_MODULES)."""
        import importlib

        for module in WARM_MODULES:
            try:
                importlib.import_module(module)
            except ImportError:  # optional ones (IPython) may be missing
                pass

    def open(
        self,
        experiment_name: str,
        run_name: str | None,
        tags: dict[str, str],
        system_metrics: bool = True,
        system_metrics_interval: float = 10.0,
        run_id: str | None = None,
    ) -> RunInfo:
        """Start (or, with `run_id`, reopen) the run; with `system_metrics`, MLflow samples CPU,
        memory, disk, network (and GPU, through NVML) every `system_metrics_interval` seconds
        in a background thread of this process while the run is open."""
        import mlflow

        from pipeline.store import retry_locked, store_lock

        if self.uri == default_tracking_uri():
            STORE_DIR.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.uri)
        if system_metrics:
            mlflow.set_system_metrics_sampling_interval(system_metrics_interval)
        # One process at a time creates the store's tables, the experiment and the run.
        with store_lock(self.uri):
            self._client = client = mlflow.MlflowClient(self.uri)  # creates a new store's tables
            if run_id:
                experiment_id = client.get_run(run_id).info.experiment_id
            else:
                experiment_id = ensure_experiment(client, experiment_name, self.uri)
            run = retry_locked(
                mlflow.start_run,
                run_id=run_id,
                experiment_id=experiment_id,
                run_name=None if run_id else run_name,
                tags=tags,
                log_system_metrics=system_metrics,
            )
        self.info = RunInfo(run.info.run_id, experiment_id)
        self.is_open = True
        return self.info

    def _write(self, method: str, *args, **kwargs):
        from pipeline.store import retry_locked

        return retry_locked(getattr(self._client, method), self.info.run_id, *args, **kwargs)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self._write("log_batch", params=[Param(k, str(v)) for k, v in params.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        self._write("log_text", text, artifact_file)

    def log_metrics(
        self, metrics: dict[str, float], step: int = 0, timestamp_ms: int | None = None
    ) -> None:
        import time

        from mlflow.entities import Metric

        stamp = timestamp_ms or int(time.time() * 1000)
        batch = [Metric(k, float(v), stamp, step) for k, v in metrics.items()]
        self._write("log_batch", metrics=batch)

    def log_datasets(self, splits: list[dict]) -> None:
        """Log each split (`lineage.describe_splits`: plain data, no arrays) as a dataset input
        of the run, with its role (train/val/test) as context."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        from pipeline.lineage import mlflow_dataset

        inputs = [
            DatasetInput(
                Dataset(**mlflow_dataset(split).to_dict()),
                [
                    InputTag("num_examples", str(split["features"][0][0])),
                    InputTag(DATA_CONTEXT, split["context"]),
                ],
            )
            for split in splits
        ]
        self._write("log_inputs", datasets=inputs)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        self._write("log_artifact", local_path, artifact_path)

    def log_pictures(
        self, summary: str, history: dict, y_true, y_pred, task: str, num_classes: int, scaler
    ) -> list[str]:
        """Draw the run's pictures (pipeline/plots.py) and log them with the model summary."""
        import tempfile

        from pipeline import plots

        self.log_text(summary, "model_summary.txt")
        figures = plots.draw(history, y_true, y_pred, task, num_classes, scaler)
        with tempfile.TemporaryDirectory() as folder:
            for name, fig in figures.items():
                path = os.path.join(folder, f"{name}.png")
                fig.savefig(path)
                self.log_artifact(path, "plots")
        return ["model_summary.txt", *(f"plots/{name}.png" for name in figures)]

    def post(self, name: str, *args, **kwargs) -> None:
        """Call `name` without waiting for it to finish: a failure is a warning, not an error.

        For what the end of a run only hands over (pictures, final metrics, files): in a
        tracking process it overlaps with the training process's own work."""
        try:
            getattr(self, name)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a missing picture must not fail the run
            print(f"Warning: MLflow `{name}` failed: {exc}", file=sys.stderr)

    def log_model(self, files, registered_model_name: str | None = None) -> str:
        """Log the model the training process saved (`mlflow_model.KerasModelFiles`) as this
        run's MLflow model "model"; returns its URI."""
        from mlflow.models import Model

        from pipeline.mlflow_model import KerasFlavor

        info = Model.log(
            artifact_path=None,
            name="model",
            flavor=KerasFlavor(files),
            run_id=self.info.run_id,
            registered_model_name=registered_model_name,
            validate_serving_input=False,  # tests/ serve the example through a reloaded model
        )
        return info.model_uri

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._write("log_batch", tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def close(self, status: str, tags: dict[str, str] | None = None) -> None:
        """End the run FINISHED, FAILED or KILLED, with `tags` saying why."""
        import mlflow

        from pipeline.store import retry_locked

        if not self.is_open:
            return
        if tags:
            self.set_tags(tags)
        retry_locked(mlflow.end_run, status=status)  # also stops the system-metrics sampler
        self.is_open = False

    def resumable_state(self, run_id: str, current: dict[str, Any]) -> dict[str, Any]:
        return resumable_state(self.uri, run_id, current)

    def shutdown(self) -> None:
        """Nothing to stop in this process (the tracking process version ends itself)."""


DATA_CONTEXT = "mlflow.data.context"  # MLflow's input tag for a dataset's role (train/val/test)
