"""The data: MNIST from mirrors, the IDX codec, the processed splits, and batches for training."""
