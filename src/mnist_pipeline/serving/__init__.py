"""Answering with a trained model: any image file made into MNIST's format, the one loader that
`predict`, the demo and the served MLflow model open their network with, and the served model."""
