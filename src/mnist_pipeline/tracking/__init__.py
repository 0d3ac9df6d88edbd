"""MLflow: the store, the run train opens and evaluate continues, tags and lineage, the model
registry, sweeps as parent runs, per-epoch metrics."""
