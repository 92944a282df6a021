"""Reference results: train the default configs and presets, print Markdown tables next to
published and naive baselines, and (with --update-readme) write them into README.md.

    python scripts/reference_results.py                   # all tables (11 minutes on an idle 2-core CPU)
    python scripts/reference_results.py --only forecast   # one table (also: mnist1d, darts_airline, sine, uea)
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


# Series and the default model's command for each; the naive forecasts come from the same runs.
FORECAST_SERIES = ("sunspots", "airline", "lynx", "shampoo", "uschange")


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    """Mean (range) of a metric over the seeds."""
    show = number if fmt == "number" else fmt.format
    return f"{show(np.mean(values))} ({show(min(values))}-{show(max(values))})"


def number(value: float) -> str:
    """Three significant digits, without an exponent for the lynx's thousands."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def forecast_table(extra: list[str]) -> str:
    """The default model on each shipped series over three seeds, beside persistence and
    seasonal naive on the same test windows (original units), and MASE."""
    rows = [
        "| series | command | test RMSE, mean (range) over seeds 0-2 | persistence | seasonal naive "
        "| MASE, mean (range) | wall time per run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for series in FORECAST_SERIES:
        results = [run(f"data={series}", f"seed={seed}", *extra) for seed in SEEDS]
        first = results[0][0]
        seasonal = first.get("test_rmse_seasonal_naive")
        rows.append(
            f"| {series} | `python -m pipeline.train data={series}` "
            f"| {spread([m['test_rmse'] for m, _, _ in results], 'number')} "
            f"| {number(first['test_rmse_persistence'])} "
            f"| {'' if seasonal is None else number(seasonal)} "
            f"| {spread([m['test_mase'] for m, _, _ in results], '{:.2f}')} "
            f"| {np.mean([t for _, t, _ in results]):.0f} s |"
        )
    return "\n".join(rows)


# Darts' quick start on the same series: fit before 1958-01, forecast the 36 months after, MAPE.
DARTS_AIRLINE = {
    "naive drift + seasonal ensemble (Darts)": 5.66,
    "exponential smoothing (Darts)": 5.11,
}
# The last 36 of 144 months are the test split; the model forecasts 12 months at a time and is
# rolled forward 3 times from the 36 months before 1958-01, feeding its forecasts back in.
AIRLINE_PROTOCOL = ["data=airline", "data.test_fraction=0.25", "data.window=36", "data.horizon=12"]


def rolled_forecast(model, window: np.ndarray, steps: int) -> np.ndarray:
    """`steps` values forecast from one window (scaled units), `horizon` at a time."""
    window, out = window.copy(), []
    while len(out) < steps:
        pred = np.asarray(model(window[None], training=False))[0]
        out.extend(pred)
        window = np.concatenate([window[len(pred) :], pred[:, None]])
    return np.asarray(out[:steps])


def darts_airline_table(extra: list[str]) -> str:
    import tempfile

    import keras

    from pipeline.data import make_datasets

    rows = ["| model | command | MAPE, 1958-01 to 1960-12 |", "| --- | --- | ---: |"]
    rows += [f"| {name} | | {mape:.2f}% |" for name, mape in DARTS_AIRLINE.items()]
    mapes = []
    for seed in SEEDS:
        out = Path(tempfile.mkdtemp(prefix="darts-airline-"))
        from pipeline.train import train

        register_configs()
        with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    "tracking.experiment_name=reference-results",
                    *AIRLINE_PROTOCOL,
                    f"seed={seed}",
                    *extra,
                ],
            )
        train(cfg, out)
        data = make_datasets(validate(cfg).data, seed)
        x, y = data.arrays["test"]  # window k's targets start 36 - k months before the end
        model = keras.saving.load_model(out / "model.keras")
        pred = rolled_forecast(model, x[0], 36)
        actual = np.concatenate([y[0], y[12], y[24]])
        std, mean = data.scaler["std"], data.scaler["mean"]
        pred, actual = pred * std + mean, actual * std + mean
        mapes.append(float(np.mean(np.abs(actual - pred) / np.abs(actual)) * 100))
    cmd = "python -m pipeline.train " + " ".join(AIRLINE_PROTOCOL)
    rows.append(
        f"| default LSTM, rolled 12 months at a time | `{cmd}` | {spread(mapes, '{:.2f}')}% |"
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
    "forecast": ("Forecasting series shipped with statsmodels and aeon", forecast_table),
    "darts_airline": ("Airline passengers, Darts' quick-start protocol", darts_airline_table),
    "sine": ("Sine wave", sine_table),
    "uea": ("UEA/UCR archive datasets shipped with aeon", uea_table),
}


def update_readme(sections: dict[str, str]) -> None:
    """Write each table between its markers, in README.md or (the sine table) docs/performance.md."""
    files = [ROOT / "README.md", ROOT / "docs" / "performance.md"]
    texts = {path: path.read_text() for path in files}
    for key, body in sections.items():
        pattern = re.compile(
            rf"(<!-- results:{key}:start -->\n).*?(<!-- results:{key}:end -->)", re.S
        )
        path = next((f for f in files if pattern.search(texts[f])), None)
        if path is None:
            raise SystemExit(f"No <!-- results:{key}:start/end --> markers in README.md or docs/")
        texts[path] = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), texts[path])
    for path, text in texts.items():
        path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--only", default="mnist1d,forecast,darts_airline,sine,uea", help="comma-separated tables"
    )
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
