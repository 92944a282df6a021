"""The sweeper's config schema, registered as `hydra/sweeper=rnn_optuna` with sampler and pruner
groups: `hydra/sweeper/sampler=tpe|random|grid|cmaes|gp`,
`hydra/sweeper/pruner=none|median|hyperband|successive_halving|threshold|percentile`.

Close to hydra-optuna-sweeper's surface, so `hydra.sweeper.n_trials=...`,
`hydra.sweeper.sampler.seed=...` and `hydra.sweeper.params` read the same.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

PROVIDER = "rnn_optuna_sweeper"


# --- samplers ----------------------------------------------------------------------------------
@dataclass
class TPESamplerConfig:
    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10
    multivariate: bool | None = None
    constant_liar: bool = True


@dataclass
class RandomSamplerConfig:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class GridSamplerConfig:
    _target_: str = "optuna.samplers.GridSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    n_startup_trials: int = 1
    sigma0: float | None = None
    use_separable_cma: bool = False
    with_margin: bool = False


@dataclass
class GPSamplerConfig:
    _target_: str = "optuna.samplers.GPSampler"
    seed: int | None = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False


# --- pruners -----------------------------------------------------------------------------------
@dataclass
class NopPrunerConfig:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConfig:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class HyperbandPrunerConfig:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class SuccessiveHalvingPrunerConfig:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class ThresholdPrunerConfig:
    _target_: str = "optuna.pruners.ThresholdPruner"
    lower: float | None = None
    upper: float | None = None
    n_warmup_steps: int = 0
    interval_steps: int = 1


@dataclass
class PercentilePrunerConfig:
    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


# --- the sweeper -------------------------------------------------------------------------------
@dataclass
class RnnOptunaSweeperConf:
    _target_: str = "hydra_plugins.rnn_optuna_sweeper.sweeper.RnnOptunaSweeper"
    # Sampler and pruner stay configs until the search space is known (the grid sampler needs it).
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    n_trials: int = 20
    direction: str | None = None
    study_name: str | None = None
    storage: str | None = None
    n_jobs: int = 1
    n_workers: int = 1
    # Fork each worker's trial process from one that imported TensorFlow, Keras, MLflow and
    # Optuna once (pipeline/sweeps/preloaded.py) instead of starting a fresh interpreter.
    preload: bool = False
    gpus_per_trial: int | None = None
    max_failures: int = 5
    heartbeat_interval: float | None = 60
    grace_period: float = 300
    stale_retries: int = 1
    # Register the best trial's model under this name in MLflow's model registry and point the
    # alias `champion` at it while it is the best; null = don't register.
    register_best: str | None = None
    params: dict[str, str] | None = None


SAMPLERS = {
    "tpe": TPESamplerConfig,
    "random": RandomSamplerConfig,
    "grid": GridSamplerConfig,
    "cmaes": CmaEsSamplerConfig,
    "gp": GPSamplerConfig,
}
PRUNERS = {
    "none": NopPrunerConfig,
    "median": MedianPrunerConfig,
    "hyperband": HyperbandPrunerConfig,
    "successive_halving": SuccessiveHalvingPrunerConfig,
    "threshold": ThresholdPrunerConfig,
    "percentile": PercentilePrunerConfig,
}


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name="rnn_optuna", node=RnnOptunaSweeperConf, provider=PROVIDER)
    for name, node in SAMPLERS.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=node, provider=PROVIDER)
    for name, node in PRUNERS.items():
        cs.store(group="hydra/sweeper/pruner", name=name, node=node, provider=PROVIDER)


register()
