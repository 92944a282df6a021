"""What a sweep leaves behind: the parent MLflow run, its artifacts, and the console summary.

The parent run goes through MlflowClient, not mlflow's fluent API, because jobs running in this
same process open their own (fluent) runs while the parent is open.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import optuna
import yaml
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from pipeline.sweeps.space import SearchSpace
from pipeline.tracking.runs import process_tags
from pipeline.tracking.store import ensure_experiment, open_client

PARENT_ATTR = "mlflow_parent_run_id"  # study user attr: the study's one parent run


class ParentRun:
    """One MLflow run per study, shared by every worker on any machine; trials nest under it."""

    def __init__(self, uri: str, experiment_name: str, study_name: str):
        self.uri, self.study_name = uri, study_name
        self.client = open_client(uri)
        self.experiment_id = ensure_experiment(self.client, experiment_name, uri)
        self.run_id = ""

    def open(self, study: optuna.Study, params: dict, lock) -> None:
        """Join the study's parent run (its id is a user attr of the study), or create it.

        `lock` (the storage's claim lock) makes "look for the parent, else create it" one step for
        workers on any machine, so a study has one parent however many workers start together.
        """
        with lock:
            if self._join(study.user_attrs.get(PARENT_ATTR)):
                return
            tags = {"sweep": "parent", "study_name": self.study_name, **process_tags()}
            run = self.client.create_run(
                self.experiment_id, run_name=f"sweep-{self.study_name}", tags=tags
            )
            self.run_id = run.info.run_id
            study.set_user_attr(PARENT_ATTR, self.run_id)
        for key, value in params.items():
            self.client.log_param(self.run_id, key, str(value)[:6000])

    def _join(self, run_id: str | None) -> bool:
        """Reopen the study's parent if it is in this experiment and not deleted."""
        if not run_id:
            return False
        try:
            run = self.client.get_run(run_id)
        except MlflowException:  # the study was first swept against another MLflow store
            return False
        if run.info.experiment_id != self.experiment_id or run.info.lifecycle_stage != "active":
            return False
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")
        for key, value in process_tags().items():  # this worker keeps it alive now
            self.client.set_tag(run_id, key, value)
        return True

    def tag_child(self, run_id: str | None, state: str) -> None:
        if run_id:
            self.client.set_tag(run_id, "trial_state", state)

    def finish(self, study, space: SearchSpace, metric: str, ran: list[int], status: str) -> None:
        """Log the outcome (best value and params, trial counts, plots), close the run, print."""
        trials = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
        mine = [t for t in trials if t.number in ran]
        for name in ("complete", "pruned", "fail"):
            self.client.log_metric(self.run_id, f"trials_{name}", counts[name])
        best = _best(study)
        if best is not None:  # tags, not params: a later worker refreshes them
            self.client.log_metric(self.run_id, "best_value", best.value)
            self.client.set_tag(self.run_id, "best_trial", str(best.number))
            for key, value in best.params.items():
                self.client.set_tag(self.run_id, f"best.{key}", str(value))
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            results = summary(study, space, metric, counts)
            (out / "optimization_results.yaml").write_text(yaml.safe_dump(results, sort_keys=False))
            write_plots(study, out)
            for path in sorted(out.iterdir()):
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)
        print(console_summary(study, space, metric, counts, self.run_id, mine), flush=True)


def _best(study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None


def summary(study, space: SearchSpace, metric: str, counts: dict) -> dict:
    """The content of optimization_results.yaml."""
    best = _best(study)
    return {
        "study_name": study.study_name,
        "direction": study.direction.name.lower(),
        "metric": metric,
        "search_space": space.describe(),
        "fixed_overrides": space.fixed,
        "trials": {k: v for k, v in counts.items() if v},
        "best_trial": None if best is None else best.number,
        "best_value": None if best is None else float(best.value),
        "best_params": None if best is None else dict(best.params),
        "best_command": None if best is None else space.command(best.params),
    }


def write_plots(study, out: Path) -> list[Path]:
    """History, parameter importances and parallel coordinates as PNGs (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    written = []
    # fANOVA's default 64 trees take seconds; 16 rank a few parameters as well.
    evaluator = optuna.importance.FanovaImportanceEvaluator(n_trees=16, seed=0)
    plots = {
        "optimization_history": ovm.plot_optimization_history,
        "param_importances": lambda s: ovm.plot_param_importances(s, evaluator=evaluator),
        "parallel_coordinate": ovm.plot_parallel_coordinate,
    }
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks these plots experimental
                ax = plot(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(9, 5.5)
            fig.tight_layout()
            fig.savefig(out / f"{name}.png", dpi=100)
            plt.close(fig)
            written.append(out / f"{name}.png")
        except Exception as exc:  # noqa: BLE001 - too few trials for a plot is not an error
            (out / f"{name}.txt").write_text(f"not plotted: {type(exc).__name__}: {exc}\n")
    return written


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def console_summary(
    study, space: SearchSpace, metric: str, counts: dict, run_id: str, mine=()
) -> str:
    """The table of best trials and the command reproducing the best one."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    done.sort(key=lambda t: t.value if math.isfinite(t.value) else -math.inf, reverse=reverse)
    keys = list(space.distributions)
    header = ["trial", metric, *(k.rsplit(".", 1)[-1] for k in keys)]
    rows = [
        [str(t.number), f"{t.value:.4f}", *(_short(t.params.get(k)) for k in keys)]
        for t in done[:5]
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "",
        f"== sweep {study.study_name} ==",
        "trials      "
        + ", ".join(f"{v} {k}" for k, v in counts.items() if v and k != "waiting")
        + f"  ({len(mine)} in this invocation; MLflow parent run {run_id})",
        f"best trials by {metric} ({study.direction.name.lower()}):",
        *(
            "  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
            for r in [header, *rows]
        ),
    ]
    if done:
        best = done[0]
        lines += ["reproduce the best trial:", f"  {space.command(best.params)}"]
    else:
        lines.append("no trial completed yet")
    return "\n".join(lines)
