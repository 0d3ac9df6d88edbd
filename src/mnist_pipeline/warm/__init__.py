"""A warm worker for the pipeline's stages: torch, Lightning and MLflow imported once, each stage
run by a fork of it (client.py: the stage's side; worker.py: the worker's)."""
