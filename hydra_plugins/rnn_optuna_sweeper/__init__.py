"""Hydra sweeper running Optuna 5 studies for `python -m pipeline.train -m hparams_search=...`.

Hydra instantiates sweepers only from the `hydra_plugins` namespace package, hence this folder.
"""
