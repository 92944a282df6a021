"""Optuna sweeps: the study loop behind `python -m pipeline.train -m hparams_search=...`.

space (Hydra sweep grammar -> Optuna distributions), algorithms (sampler, pruner), storage (journal
file or DB, claim lock, heartbeats), database (PostgreSQL/MySQL: pool settings, cold start,
errors), runner (claim, launch, record), report (parent MLflow run, artifacts, console), job (the
trial's side inside train(): tags and the pruning callback).
"""
