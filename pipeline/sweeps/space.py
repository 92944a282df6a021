"""Search spaces: Hydra's sweep grammar in, Optuna distributions and job overrides out.

`hydra.sweeper.params` and sweep overrides on the command line (`model=lstm,gru`) use the grammar
Hydra users know: `choice(...)`, `range(...)`, `interval(...)`, `int(interval(...))` and
`tag(log, ...)`. Everything else on the command line is a fixed override every trial gets.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from pipeline.config.errors import ConfigError


def distribution_of(override: Override) -> BaseDistribution:
    """The Optuna distribution a sweep override describes."""
    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(override.sweep_iterator()))
    if isinstance(value, RangeSweep):
        points = list(override.sweep_iterator())
        if not points:
            raise ConfigError(f"The sweep `{key}={override.input_line}` is an empty range.")
        if value.shuffle:
            return CategoricalDistribution(points)
        if all(isinstance(x, int) for x in (value.start, value.stop, value.step)):
            # Hydra's range stops before `stop`, Optuna's bounds are inclusive.
            return IntDistribution(points[0], points[-1], step=value.step)
        return FloatDistribution(points[0], points[-1], step=float(value.step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ConfigError(
        f"Cannot search `{override.input_line}`: use choice(...), range(...), interval(...), "
        "int(interval(...)) or tag(log, interval(...))."
    )


def format_value(value: Any) -> str:
    """A trial's value as Hydra override text (`true`, `null`, quoted strings when needed)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, str):
        return Transformer.encode(value)
    return repr(value) if isinstance(value, float) else str(value)


@dataclass
class SearchSpace:
    """The searched keys with their distributions, and the overrides every trial shares."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, params: Mapping[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
        """Parse `hydra.sweeper.params` and the command line; the command line wins per key."""
        parser = OverridesParser.create()
        lines = [f"{key}={value}" for key, value in (params or {}).items()]
        space = cls()
        for override in parser.parse_overrides(lines):
            space.distributions[override.get_key_element()] = _searched(override, "params")
        for override in parser.parse_overrides(list(arguments)):
            key = override.get_key_element()
            if override.is_sweep_override():
                space.distributions[key] = distribution_of(override)
            else:
                space.distributions.pop(key, None)
                space.fixed.append(override.input_line)
        if not space.distributions:
            raise ConfigError(
                "The Optuna sweep has nothing to search: set `hydra.sweeper.params` (for example "
                "with `hparams_search=rnn`) or give a sweep on the command line (`model.units=8,16`)."
            )
        return space

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The command-line overrides of one trial: shared ones first, then its sampled values."""
        return [*self.fixed, *(f"{k}={format_value(v)}" for k, v in params.items())]

    def command(self, params: Mapping[str, Any]) -> str:
        """The single-run shell command that trains a trial's configuration again."""
        return " ".join(["python -m pipeline.train", *map(shlex.quote, self.overrides(params))])

    def describe(self) -> dict[str, str]:
        """Each searched key with its distribution, readable in MLflow params and YAML."""
        return {key: _describe(dist) for key, dist in self.distributions.items()}

    def grid(self) -> dict[str, list]:
        """The points of every dimension, for the grid sampler (intervals have none)."""
        points: dict[str, list] = {}
        for key, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                points[key] = list(dist.choices)
            elif dist.step is not None and not getattr(dist, "log", False):
                n = round((dist.high - dist.low) / dist.step)
                points[key] = [dist.low + i * dist.step for i in range(n + 1)]
            else:
                raise ConfigError(
                    f"The grid sampler needs a finite set of values for `{key}`; use choice(...) "
                    "or range(...) instead of interval(...), or pick another sampler."
                )
        return points


def _searched(override: Override, where: str) -> BaseDistribution:
    if not override.is_sweep_override():
        raise ConfigError(
            f"`hydra.sweeper.{where}.{override.get_key_element()}` is a single value; give a "
            "sweep such as choice(a, b), range(1, 4) or interval(0.0, 0.5)."
        )
    return distribution_of(override)


def _describe(dist: BaseDistribution) -> str:
    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(format_value(c) for c in dist.choices)})"
    kind = "int" if isinstance(dist, IntDistribution) else "float"
    extra = ", log" if dist.log else (f", step={dist.step}" if dist.step not in (None, 1) else "")
    return f"{kind}[{dist.low}, {dist.high}{extra}]"
