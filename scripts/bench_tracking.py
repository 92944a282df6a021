"""How much wall time does MLflow tracking add to a training run?

Times `train(cfg)` (every tag, dataset input, per-epoch metric, system metrics, plots, the
MLflow model and checkpoint) against a bare run of the same data, model, fit and evaluate with
no MLflow at all, in one process, alternating which goes first, and prints medians and ratios.

    python scripts/bench_tracking.py                      # the default config, 3 pairs
    python scripts/bench_tracking.py --repeats 5 trainer.epochs=10

The whole-run ratio includes the noise of the fit itself (other processes, thread scheduling);
the "outside fit" line subtracts each run's own fit time, leaving the fixed costs of tracking.
MLflow runs in the training process (its public API, metrics through its asynchronous queue);
the command line's start-up overhead is measured by scripts/bench_throughput.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed one


def bare(cfg) -> dict[str, float]:
    """train() minus tracking: same seed, data, model, callbacks that change training, evaluate."""
    import keras

    from pipeline.config import validate
    from pipeline.data import make_datasets
    from pipeline.models import build_model
    from pipeline.training.compile import compile_model, optimizer_settings
    from pipeline.training.devices import seed_everything
    from pipeline.training.objective import monitored
    from pipeline.training.run import _limit

    started = time.perf_counter()
    conf = validate(cfg)
    seed_everything(conf)
    data = make_datasets(conf.data, conf.seed)
    model = build_model(conf.model, data.spec)
    compile_model(model, conf.trainer, data.spec, *optimizer_settings(conf))
    monitor, mode = monitored(conf.trainer.monitor, data.spec.task)
    callbacks = []
    if conf.trainer.early_stopping_patience is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                mode=mode,
                patience=conf.trainer.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    fit_started = time.perf_counter()
    history = model.fit(
        _limit(data.train, conf.trainer.limit_train_batches),
        validation_data=_limit(data.val, conf.trainer.limit_eval_batches),
        epochs=conf.trainer.epochs,
        callbacks=callbacks,
        shuffle=False,
        verbose=0,
    )
    fit_seconds = time.perf_counter() - fit_started
    model.evaluate(_limit(data.test, conf.trainer.limit_eval_batches), verbose=0)
    return {
        "wall": time.perf_counter() - started,
        "fit": fit_seconds,
        "epochs": len(history.history["loss"]),
    }


def tracked(cfg, workdir: Path) -> dict[str, float]:
    from pipeline.train import train

    started = time.perf_counter()
    metrics = train(cfg, output_dir=tempfile.mkdtemp(dir=workdir))
    return {
        "wall": time.perf_counter() - started,
        "fit": metrics["fit_seconds"],
        "epochs": metrics["epochs_trained"],
    }


def callback_cost(cfg, workdir: Path, epochs: int = 50) -> float:
    """Seconds per epoch the tracking callbacks take, timed directly (too small for the fit noise)."""
    from pipeline.config import validate
    from pipeline.data import make_datasets
    from pipeline.models import build_model
    from pipeline.tracking.runs import epoch_logger, open_run
    from pipeline.training.callbacks import best_checkpoint

    conf = validate(cfg)
    model = build_model(conf.model, make_datasets(conf.data, conf.seed).spec)
    model.compile(optimizer="adam", loss="mse")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    with open_run(uri, "bench-callbacks", "callbacks", {}, system_metrics=False):
        callbacks = [epoch_logger(), best_checkpoint(workdir / "best.keras", "val_loss", "min")]
        for callback in callbacks:
            callback.set_model(model)
        started = time.perf_counter()
        for epoch in range(epochs):
            logs = {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.0 - epoch / epochs}
            for callback in callbacks:  # improving every epoch: the checkpoint's worst case
                callback.on_epoch_end(epoch, {**logs, "val_accuracy": 0.5})
        elapsed = time.perf_counter() - started  # the training thread's cost; MLflow's queue writes
    return elapsed / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer.epochs=10")
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir

    from pipeline.config import CONF_DIR, register_configs

    register_configs()
    workdir = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    # A throwaway store, so the benchmark never fills the project's mlruns/.
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    overrides = ["trainer.verbose=0", *args.overrides]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
        smoke = compose("config", overrides=[*overrides, "trainer=smoke", "trainer.verbose=0"])

    # Warm-up: one-time imports and store creation belong to neither side's measurement.
    tracked(smoke, workdir)
    bare(smoke)

    results: dict[str, list[dict]] = {"bare": [], "tracked": []}
    for i in range(args.repeats):
        order = ["bare", "tracked"] if i % 2 == 0 else ["tracked", "bare"]
        for kind in order:
            run = bare(cfg) if kind == "bare" else tracked(cfg, workdir)
            results[kind].append(run)
            print(
                f"pair {i + 1} {kind:8s} wall {run['wall']:7.1f} s  fit {run['fit']:7.1f} s  "
                f"epochs {run['epochs']}",
                flush=True,
            )

    def median(kind: str, key) -> float:
        return statistics.median(key(r) for r in results[kind])

    wall = {k: median(k, lambda r: r["wall"]) for k in results}
    outside = {k: median(k, lambda r: r["wall"] - r["fit"]) for k in results}
    per_epoch = {k: median(k, lambda r: r["fit"] / r["epochs"]) for k in results}
    print(f"\nconfig overrides: {' '.join(overrides)}")
    print(
        f"median wall     bare {wall['bare']:.1f} s, tracked {wall['tracked']:.1f} s, "
        f"ratio {wall['tracked'] / wall['bare']:.4f} ({100 * (wall['tracked'] / wall['bare'] - 1):+.2f}%)"
    )
    print(
        f"outside fit     bare {outside['bare']:.2f} s, tracked {outside['tracked']:.2f} s, "
        f"tracking adds {outside['tracked'] - outside['bare']:.2f} s "
        f"= {100 * (outside['tracked'] - outside['bare']) / wall['bare']:.2f}% of the bare run"
    )
    print(
        f"fit per epoch   bare {per_epoch['bare']:.3f} s, tracked {per_epoch['tracked']:.3f} s, "
        f"ratio {per_epoch['tracked'] / per_epoch['bare']:.4f}"
    )
    per_callback = callback_cost(cfg, workdir)
    epochs = statistics.median(r["epochs"] for r in results["bare"])
    fixed = outside["tracked"] - outside["bare"]
    print(
        f"callbacks       {1000 * per_callback:.2f} ms per epoch (metrics + best checkpoint), "
        f"x {epochs:.0f} epochs = {per_callback * epochs:.2f} s"
    )
    print(
        f"tracking cost   {fixed:.2f} s fixed + {per_callback * epochs:.2f} s per-epoch = "
        f"{100 * (fixed + per_callback * epochs) / wall['bare']:.2f}% of the bare run's wall time"
    )


if __name__ == "__main__":
    main()
