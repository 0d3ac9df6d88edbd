"""DVC stage `preprocess`: decode and validate the IDX files, split, and write compact arrays."""

from __future__ import annotations

import numpy as np

from mnist_pipeline.config.checks import check_split
from mnist_pipeline.config.params import load_params
from mnist_pipeline.data import idx, splits
from mnist_pipeline.runtime.command import run_stage
from mnist_pipeline.utils.paths import PROCESSED_DIR, RAW_DIR


def read_split(images_file: str, labels_file: str) -> splits.Split:
    images, labels = idx.read_examples(RAW_DIR / images_file, RAW_DIR / labels_file)
    return splits.Split(images, labels.astype(np.int64))


def main() -> None:
    cfg = load_params()
    check_split(cfg)  # before reading anything: `abc` or `4999.5` is refused naming the key
    data, files = cfg.data, cfg.data.files
    full_train = read_split(files.train_images.name, files.train_labels.name)
    train_idx, val_idx = splits.stratified_split(full_train.labels, data.val_size, data.split_seed)
    parts = {
        "train": full_train.take(train_idx),
        "val": full_train.take(val_idx),
        "test": read_split(files.test_images.name, files.test_labels.name),
    }
    splits.save(parts, PROCESSED_DIR)
    print("examples per split:", {name: len(s) for name, s in parts.items()})


if __name__ == "__main__":
    run_stage(main, idx.IDXError, FileNotFoundError, ValueError)
