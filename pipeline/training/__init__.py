"""Training stage: `train(cfg) -> metrics`; compile, callbacks, resume, the monitored metric,
devices, and the CPU speed tricks under cpu/."""
