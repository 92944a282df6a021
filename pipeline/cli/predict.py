"""`python -m pipeline.predict`: the Hydra main around `pipeline.inference.predict`."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pipeline.config import PipelineError
from pipeline.config.predict import register_predict_config
from pipeline.config.schema import to_objects
from pipeline.inference import predict

register_predict_config()


def summary(result) -> str:
    what = "forecast step(s)" if result.kind == "forecast" else "prediction(s)"
    line = f"Wrote {result.rows:,} {what} to {result.output}"
    if result.inputs >= 1000:  # a rate over a handful of inputs says nothing
        line += f" ({result.inputs / max(result.seconds, 1e-9):,.0f} inputs/s)"
    lines = [line + "."]
    if result.run_id:
        scores = "  ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
        lines += [f"evaluation  {scores}", f"MLflow run  {result.run_id}"]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=".", config_name="predict")
def main(cfg: DictConfig) -> None:
    try:
        result = predict(to_objects(cfg))
    except PipelineError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("Stopped: interrupted; no predictions were written.", file=sys.stderr)
        sys.exit(130)
    print(summary(result), flush=True)


def run() -> None:
    """The command line: explain config mistakes first, then hand over to Hydra."""
    from pipeline.cli.preflight import preflight

    preflight(sys.argv[1:], Path(__file__).parent, "predict", register_predict_config)
    main()
