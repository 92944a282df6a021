"""Samplers and pruners from their `hydra.sweeper.sampler` / `.pruner` configs (`_target_` + args)."""

from __future__ import annotations

import importlib.util
from typing import Any

import optuna
from hydra.utils import instantiate

from pipeline.config.errors import ConfigError
from pipeline.sweeps.space import SearchSpace

# Optional packages some samplers import only when they first sample; checked up front instead.
NEEDS = {
    "optuna.samplers.CmaEsSampler": ("cmaes", "pip install cmaes"),
    "optuna.samplers.GPSampler": ("torch", "pip install torch (CPU wheels suffice)"),
}


class Algorithms:
    """Builds the study's sampler and pruner; keeps their configs as plain dicts for logging."""

    def __init__(self, sampler_config: dict[str, Any], pruner_config: dict[str, Any]):
        self.sampler_config = dict(sampler_config)
        self.pruner_config = dict(pruner_config)

    def sampler(self, space: SearchSpace, offset: int = 0) -> optuna.samplers.BaseSampler:
        """The sampler, its seed shifted by `offset` (the number of trials already in the study).

        Rebuilt before each trial this way, a resumed sweep or a second worker does not replay the
        proposals of trials 0, 1, ... that one seed would repeat, and trial k still gets seed + k.
        """
        target = self.sampler_config.get("_target_", "")
        if target in NEEDS:
            module, how = NEEDS[target]
            if importlib.util.find_spec(module) is None:
                raise ConfigError(
                    f"The sampler {target.rsplit('.', 1)[-1]} needs the `{module}` package, which "
                    f"is not installed: {how}, or pick another with hydra/sweeper/sampler=tpe."
                )
        config = dict(self.sampler_config)
        if config.get("seed") is not None:
            config["seed"] += offset
        if target.endswith("GridSampler"):
            return instantiate(config, search_space=space.grid())
        return instantiate(config)

    def pruner(self) -> optuna.pruners.BasePruner:
        return instantiate(self.pruner_config)
