"""The sweep's side of MLflow's model registry (`hydra.sweeper.register_best=NAME`).

When a sweep ends, its study's best trial's model becomes a version of the registered model NAME,
tagged with the study, metric, direction and value it won with; the alias `champion` moves to it
only when it beats the version the alias points at, so `models:/NAME@champion` is always the best
model any sweep has registered under NAME. MLflow keeps no notion of a version's score, hence the
tags and the comparison here.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from mlflow.exceptions import MlflowException

from pipeline.config import ConfigError, PipelineError
from pipeline.sweeps.job import RUN_ID_ATTR
from pipeline.tracking.store import retry_locked

ALIAS = "champion"
MODEL_NAME = "model"  # the name each trial logs its MLflow model under (runs:/<run_id>/model)
# Version tags: which study chose the version, by which metric, and how it scored.
STUDY_TAG, METRIC_TAG, DIRECTION_TAG, VALUE_TAG = "study_name", "metric", "direction", "value"
TRIAL_TAG = "trial_number"


def check_config(name: str | None, log_model: bool) -> None:
    """Refuse, before any trial runs, a registry request the trials cannot satisfy."""
    if name and not log_model:
        raise ConfigError(
            f"`hydra.sweeper.register_best={name}` registers the best trial's MLflow model, but "
            "`tracking.log_model=false` makes the trials log none. Drop "
            "`tracking.log_model=false` (the default is true), or drop "
            "`hydra.sweeper.register_best` to sweep without registering."
        )


def prepare(client, name: str) -> None:
    """Create the registered model NAME unless it exists, so that a name MLflow refuses or a store
    without a registry stops the sweep before its trials rather than after them."""
    try:
        retry_locked(client.create_registered_model, name)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            return
        raise PipelineError(
            f"Cannot use `hydra.sweeper.register_best={name}`: MLflow's model registry refused "
            f"the name ({exc.message}). Choose another name, or drop "
            "`hydra.sweeper.register_best`."
        ) from None


@dataclass
class Score:
    """What a version won with, read back from its tags (None where a tag is missing)."""

    version: str
    metric: str | None
    direction: str | None
    value: float | None

    @classmethod
    def of(cls, version) -> Score:
        tags = version.tags
        try:
            value = float(tags[VALUE_TAG])
        except (KeyError, ValueError):  # registered by hand, or by another tool
            value = None
        return cls(str(version.version), tags.get(METRIC_TAG), tags.get(DIRECTION_TAG), value)

    def beats(self, other: Score) -> bool:
        """Strictly better on the same metric and direction: a tie keeps the champion."""
        if self.value is None or other.value is None:
            return False
        if self.direction == "maximize":
            return self.value > other.value
        return self.value < other.value

    def comparable(self, other: Score) -> bool:
        return (
            (self.metric, self.direction) == (other.metric, other.direction)
            and other.value is not None
            and math.isfinite(other.value)
        )


def register_best(client, uri: str, study, metric: str, name: str) -> str:
    """Register the study's best trial under NAME (once per run) and move the alias `champion`
    to it when it beats the current champion; returns the line that says what happened.
    `client` is an MlflowClient on the store at `uri`.

    Callers hold the study's claim lock, so workers ending together register a run once and
    compare against each other's champion.
    """
    try:
        best = study.best_trial
    except ValueError:  # no COMPLETE trial
        return f"[sweep] no trial completed: nothing registered under {name}"
    value = float(best.value)
    score = f"{metric} {value:.4g}"
    run_id = best.user_attrs.get(RUN_ID_ATTR)
    tags = {
        STUDY_TAG: study.study_name,
        METRIC_TAG: metric,
        DIRECTION_TAG: study.direction.name.lower(),
        VALUE_TAG: repr(value),  # repr: the float reads back exactly
        TRIAL_TAG: str(best.number),
    }
    version = _version_of_run(client, name, run_id) if run_id else None
    if version is not None:
        # Registered by an earlier sweep or worker, or by the trial itself when
        # tracking.registered_model_name is NAME too: tag it, register nothing new.
        for key, text in tags.items():
            if version.tags.get(key) != text:
                retry_locked(client.set_model_version_tag, name, version.version, key, text)
        done = f"{name} version {version.version} already holds trial {best.number} ({score})"
    else:
        model = _logged_model(client, run_id) if run_id else None
        if model is None:
            warn(
                f"trial {best.number}, the best of study {study.study_name}, logged no MLflow "
                f"model (run {run_id or 'unknown'}), so nothing was registered under {name}. "
                "Does its search space or an override set `tracking.log_model=false`?"
            )
            return f"[sweep] nothing registered under {name}: trial {best.number} has no model"
        # The logged model's artifact location as source, not `models:/<model_id>`: MLflow's
        # SQL registry store resolves a models:/ source through the global tracking URI, which
        # need not be this client's.
        version = retry_locked(
            client.create_model_version,
            name,
            model.artifact_location,
            run_id=run_id,
            tags=tags,
            model_id=model.model_id,
        )
        done = f"Registered {name} version {version.version} (trial {best.number}, {score})"
    new = Score(str(version.version), metric, tags[DIRECTION_TAG], value)
    return f"[sweep] {done}{_crown(client, uri, name, new)}"


def warn(message: str) -> None:
    """A paragraph on stderr, as the pipeline's other console warnings."""
    print(f"Warning: {message}", file=sys.stderr, flush=True)


def _crown(client, uri: str, name: str, new: Score) -> str:
    """Move the alias to `new` if it beats the champion; the rest of the line saying so."""
    try:
        old = Score.of(client.get_model_version_by_alias(name, ALIAS))
    except MlflowException:  # no champion yet (or its version was deleted)
        old = None
    if old is not None and old.version == new.version:
        return f"; alias {ALIAS} already points at it"
    if old is not None and not new.comparable(old):
        # Scores on different metrics or directions say nothing about each other: moving the
        # alias that inference follows needs a comparison, so a person decides.
        chosen = f"{old.metric}, {old.direction}" if old.metric else "hand (it has no metric tag)"
        warn(
            f"the {ALIAS} of {name} (version {old.version}) was chosen by {chosen}; this sweep "
            f"optimizes {new.metric}, {new.direction}. The scores do not compare, so the alias "
            "stays. To move it to this sweep's best anyway: `python -c \"import mlflow; "
            f"mlflow.MlflowClient('{uri}').set_registered_model_alias('{name}', '{ALIAS}', "
            f"'{new.version}')\"`; or register this search under another name with "
            "`hydra.sweeper.register_best=OTHER`."
        )
        return f"; {ALIAS} stays at version {old.version} (chosen by {chosen}: not comparable)"
    if old is not None and not new.beats(old):
        relation = "ties" if old.value == new.value else "beats"
        return (
            f"; {ALIAS} stays at version {old.version} ({old.value:.4g} {relation} {new.value:.4g})"
        )
    retry_locked(client.set_registered_model_alias, name, ALIAS, new.version)
    if old is None:
        return f" and moved alias {ALIAS} to it"
    return f" and moved alias {ALIAS} to it from version {old.version} ({old.value:.4g})"


def _version_of_run(client, name: str, run_id: str):
    """The version of NAME already made from this run, if any."""
    # By run id alone (hex, safe to quote), then by name here: a name may hold quotes.
    found = [v for v in client.search_model_versions(f"run_id = '{run_id}'") if v.name == name]
    return min(found, key=lambda v: int(v.version)) if found else None


def _logged_model(client, run_id: str):
    """The MLflow model the trial's run logged as `model`, newest first if it logged several."""
    try:
        run = client.get_run(run_id)
    except MlflowException:  # the run is in another store
        return None
    found = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1,
    )
    return found[0] if found else None
