"""The MLflow side of a run: the store, the run's lifecycle and status, its tags, data lineage,
pictures and the logged model. MLflow's public API only."""
