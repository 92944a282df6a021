"""The Hydra configs, shipped inside the package (Hydra finds them as pkg://pipeline.conf)."""
