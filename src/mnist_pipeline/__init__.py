"""MNIST digit recognition as a reproducible DVC + Hydra + Lightning + MLflow pipeline."""

__version__ = "0.1.0"
