"""Reference results: train the default configs and presets, print Markdown tables next to
published and naive baselines, and (with --update-readme) write them into README.md.

    python scripts/reference_results.py                   # all tables (11 minutes on an idle 2-core CPU)
    python scripts/reference_results.py --only sunspots   # one table (also: mnist1d, sine, uea)
    python scripts/reference_results.py --update-readme   # rewrite README's Results section

Runs are logged to the project's MLflow store under the experiment `reference-results`.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from pipeline.config import register_configs, validate  # noqa: E402

# Greydanus (2020), "Scaling down deep learning", MNIST-1D test accuracy.
MNIST1D_PUBLISHED = [
    ("logistic regression (published)", 0.32),
    ("MLP (published)", 0.68),
    ("CNN (published)", 0.94),
    ("GRU, small hidden size (published)", 0.91),
    ("human (published)", 0.96),
]


def machine() -> str:
    import os

    from pipeline.tracking.environment import cpu_model

    return f"{os.cpu_count()}-core CPU ({cpu_model()})"


def run(*overrides: str) -> tuple[dict, float, object]:
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config", overrides=["tracking.experiment_name=reference-results", *overrides]
        )
    from pipeline.train import train

    start = time.perf_counter()
    metrics = train(cfg)
    return metrics, time.perf_counter() - start, validate(cfg)


def mnist1d_table(extra: list[str]) -> str:
    rows = ["| model | command | test accuracy | wall time |", "| --- | --- | ---: | ---: |"]
    for name, acc in MNIST1D_PUBLISHED:
        rows.append(f"| {name} | | {100 * acc:.0f}% | |")
    for label, overrides in [
        ("SimpleRNN (default config)", ["model=simple_rnn"]),
        ("LSTM (default config)", ["model=lstm"]),
        ("GRU (default config)", ["model=gru"]),
        ("best found by the sweep (GRU 192 units, lr 0.003, XLA off)", ["experiment=mnist1d_best"]),
    ]:
        metrics, seconds, _ = run(*overrides, *extra)
        cmd = "python -m pipeline.train " + " ".join(overrides)
        rows.append(
            f"| {label} | `{cmd}` | {100 * metrics['test_accuracy']:.1f}% | {seconds:.0f} s |"
        )
    return "\n".join(rows)


def sunspots_table(extra: list[str]) -> str:
    """The models' test scores beside the naive baselines every forecasting run logs (original
    units, on exactly the windows the models are tested on)."""
    rows = [
        "| model | command | test RMSE | test MAE | MASE | vs persistence RMSE | wall time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    results = []
    for label, overrides in [
        ("LSTM", ["data=sunspots", "model=lstm"]),
        ("GRU", ["data=sunspots", "model=gru"]),
        ("best preset", ["experiment=sunspots_best"]),
    ]:
        metrics, seconds, _ = run(*overrides, *extra)
        results.append((label, overrides, metrics, seconds))
    last = results[-1][2]  # the baselines depend on the data config only
    persistence = last["test_rmse_persistence"]
    for name, key in (
        ("persistence (next year = this year)", "persistence"),
        ("seasonal naive (11-year cycle)", "seasonal_naive"),
    ):
        rmse, mae = last[f"test_rmse_{key}"], last[f"test_mae_{key}"]
        rows.append(f"| {name} | | {rmse:.1f} | {mae:.1f} | | {rmse / persistence:.2f}x | |")
    for label, overrides, metrics, seconds in results:
        cmd = "python -m pipeline.train " + " ".join(overrides)
        rmse, mae, mase = metrics["test_rmse"], metrics["test_mae"], metrics["test_mase"]
        rows.append(
            f"| {label} | `{cmd}` | {rmse:.1f} | {mae:.1f} | {mase:.2f} "
            f"| {rmse / persistence:.2f}x | {seconds:.0f} s |"
        )
    return "\n".join(rows)


def sine_table(extra: list[str]) -> str:
    rows = ["| preset | test RMSE (scaled units) | wall time |", "| --- | ---: | ---: |"]
    for preset in ("sine_simple_rnn", "sequence_lstm"):
        metrics, seconds, _ = run(f"experiment={preset}", *extra)
        # Scaled units for both: forecasting runs log the scaled score under `_scaled`.
        rmse = metrics.get("test_rmse_scaled", metrics["test_rmse"])
        rows.append(f"| `experiment={preset}` | {rmse:.4f} | {seconds:.0f} s |")
    return "\n".join(rows)


# Published test accuracies (hfawaz/dl-4-tsc and hfawaz/InceptionTime result tables,
# titu1994/LSTM-FCN result CSVs), and the goal set for our presets.
UEA_PUBLISHED = {
    "JapaneseVowels": ("FCN 99.3%, ResNet 99.2%, InceptionTime 99.2%, LSTM-FCN 99%", ">= 98.6%"),
    "BasicMotions": ("InceptionTime 100%", "100%"),
    "GunPoint": ("1-NN DTW 90.7%, LSTM-FCN 100%", ">= 97%"),
    "ItalyPowerDemand": ("1-NN DTW 95.0%, LSTM-FCN 96.2%", ">= 96%"),
}
SEEDS = (0, 1, 2)


def uea_table(extra: list[str]) -> str:
    """Each shipped archive dataset with its preset (or the defaults), over three seeds."""
    rows = [
        "| dataset | command | test accuracy, mean (range) over seeds 0-2 | published | goal | wall time per run |",
        "| --- | --- | ---: | --- | --- | ---: |",
    ]
    for name, (published, goal) in UEA_PUBLISHED.items():
        preset = ROOT / "conf" / "experiment" / f"uea_{name.lower()}.yaml"
        overrides = (
            [f"experiment={preset.stem}"] if preset.is_file() else ["data=uea", f"data.name={name}"]
        )
        accs, times = [], []
        for seed in SEEDS:
            metrics, seconds, _ = run(*overrides, f"seed={seed}", *extra)
            accs.append(100 * metrics["test_accuracy"])
            times.append(seconds)
        cmd = "python -m pipeline.train " + " ".join(overrides)
        rows.append(
            f"| {name} | `{cmd}` | {np.mean(accs):.1f}% ({min(accs):.1f}-{max(accs):.1f}) "
            f"| {published} | {goal} | {np.mean(times):.0f} s |"
        )
    return "\n".join(rows)


TABLES = {
    "mnist1d": ("MNIST-1D", mnist1d_table),
    "sunspots": ("Sunspots (yearly)", sunspots_table),
    "sine": ("Sine wave", sine_table),
    "uea": ("UEA/UCR archive datasets shipped with aeon", uea_table),
}


def update_readme(sections: dict[str, str]) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    for key, body in sections.items():
        pattern = re.compile(
            rf"(<!-- results:{key}:start -->\n).*?(<!-- results:{key}:end -->)", re.S
        )
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- results:{key}:start/end --> markers")
        text = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), text)
    readme.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default="mnist1d,sunspots,sine,uea", help="comma-separated tables")
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument(
        "overrides", nargs="*", help="extra overrides for every run (e.g. trainer.epochs=2)"
    )
    args = ap.parse_args()
    sections = {}
    for key in args.only.split(","):
        title, build = TABLES[key]
        body = f"{build(args.overrides)}\n\nMeasured on a {machine()}, {time.strftime('%Y-%m-%d')}."
        print(f"\n### {title}\n\n{body}\n", flush=True)
        sections[key] = body
    if args.update_readme:
        update_readme(sections)


if __name__ == "__main__":
    main()
