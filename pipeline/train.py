"""`python -m pipeline.train`: see pipeline/cli/train.py. `train(cfg)` lives in
pipeline/training/run.py."""

from pipeline.training.run import train

__all__ = ["train"]

if __name__ == "__main__":
    from pipeline.cli.train import run

    run()
