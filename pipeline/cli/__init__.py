"""Entry points: `python -m pipeline.train`, `python -m pipeline.ui`, and the run summary."""
