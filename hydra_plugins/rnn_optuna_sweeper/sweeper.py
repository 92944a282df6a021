"""The Hydra Sweeper: Hydra plumbing only; the study, trials and reports live in pipeline.sweeps."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from pipeline.config.errors import invalid_value

# Importing the schema registers it, whichever of the two modules Hydra scans first.
from . import config as _config  # noqa: F401


class RnnOptunaSweeper(Sweeper):
    """Runs `hydra.sweeper.n_trials` Optuna trials, each one job launched by Hydra's launcher."""

    def __init__(self, sampler: Any, pruner: Any, params: Any = None, **settings: Any) -> None:
        from pipeline.sweeps.algorithms import Algorithms
        from pipeline.sweeps.runner import Settings

        if settings.get("direction") not in (None, "minimize", "maximize"):
            raise invalid_value(
                "hydra.sweeper.direction", "minimize, maximize or null", settings["direction"]
            )
        if settings["n_trials"] < 1:
            raise invalid_value(
                "hydra.sweeper.n_trials", "a positive integer", settings["n_trials"]
            )
        for key in ("n_jobs", "n_workers"):
            if settings[key] < 1:
                raise invalid_value(f"hydra.sweeper.{key}", "a positive integer", settings[key])
        if settings["gpus_per_trial"] is not None and settings["gpus_per_trial"] < 0:
            raise invalid_value(
                "hydra.sweeper.gpus_per_trial",
                "0 (CPU only), a positive integer or null (1 on a machine with GPUs)",
                settings["gpus_per_trial"],
            )
        if settings["n_workers"] > 1 and settings["n_jobs"] > 1:
            raise invalid_value(
                "hydra.sweeper.n_jobs",
                "1 when hydra.sweeper.n_workers is above 1 (workers start each trial as soon as "
                "one ends; n_jobs batches trials through Hydra's launcher: choose one)",
                settings["n_jobs"],
            )
        name = settings.get("register_best")
        if name is not None and (not str(name).strip() or any(c in str(name) for c in "/:@")):
            raise invalid_value(
                "hydra.sweeper.register_best",
                "null or a registered model name without '/', ':' or '@' (MLflow refuses the "
                "first two; models:/NAME@champion cannot hold the third)",
                name,
            )
        self.settings = Settings(**settings)
        self.algorithms = Algorithms(_plain(sampler), _plain(pruner))
        self.params = _plain(params) or {}
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from pipeline.cli.preflight import fail
        from pipeline.config import PipelineError
        from pipeline.sweeps.runner import Sweep
        from pipeline.sweeps.space import SearchSpace

        space = SearchSpace.build(self.params, arguments)
        try:
            sweep = Sweep(self.settings, space, self.config, self.algorithms)
            return sweep.run(
                lambda batch, first: self.launcher.launch(batch, initial_job_idx=first)
            )
        except PipelineError as exc:
            # Hydra would print it under a traceback; a single run prints the paragraph alone.
            fail(exc)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
