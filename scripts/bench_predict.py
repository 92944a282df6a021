"""How fast does the logged model predict in batch, as `pipeline.predict` runs it?

Trains a smoke model on MNIST-1D into a throwaway store, then times, side by side in one process,
the logged MLflow model (raw inputs in, labels and probabilities out: batches of 1,024 through a
prefetched tf.data pipeline) against plain Keras' `model.predict` on its `.keras` file at
Keras' default batch size (32), on the same inputs. Prints inputs per second for both, and the
ratio as its last line.

    python scripts/bench_predict.py                   # 20,000 inputs, best of 3
    python scripts/bench_predict.py --inputs 100000 model.units=256
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed one


def best_rate(fn, n: int, repeats: int) -> float:
    fn()  # warm-up: the first call traces the tf.function
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return n / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=20_000, help="inputs per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="training overrides, e.g. model.units=256")
    args = parser.parse_args()

    store = tempfile.mkdtemp(prefix="bench-predict-")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import keras
    import mlflow
    import numpy as np
    from hydra import compose, initialize_config_dir

    from pipeline.config import CONF_DIR, register_configs, validate
    from pipeline.data import make_datasets
    from pipeline.training.run import run_training

    register_configs()
    overrides = ["data=mnist1d", "trainer=smoke", *args.overrides]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    result = run_training(cfg, Path(store) / "out")
    x = make_datasets(validate(cfg).data, 42).arrays["test"][0]
    x = np.resize(x, (args.inputs, *x.shape[1:]))  # the test inputs, repeated

    served = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    keras_file = mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/model.keras")
    plain = keras.saving.load_model(keras_file)
    same = np.allclose(
        served.predict(x[:256])["p_0"], plain.predict(x[:256], verbose=0)[:, 0], atol=1e-5
    )
    logged = best_rate(lambda: served.predict(x), args.inputs, args.repeats)
    keras_rate = best_rate(lambda: plain.predict(x, verbose=0), args.inputs, args.repeats)
    print(f"model: {result.model_name}, {args.inputs:,} MNIST-1D inputs, best of {args.repeats}")
    print(f"same probabilities: {same}")
    print(f"logged MLflow model (pipeline.predict): {logged:,.0f} inputs/s")
    print(f"plain keras model.predict, batch 32:   {keras_rate:,.0f} inputs/s")
    print(f"ratio logged / plain: {logged / keras_rate:.2f}x")


if __name__ == "__main__":
    main()
