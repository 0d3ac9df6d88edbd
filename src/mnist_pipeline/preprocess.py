"""DVC stage `preprocess`: decode and validate the IDX files, split, and write compact arrays."""

from __future__ import annotations

from pathlib import Path

from mnist_pipeline import dataset, idx
from mnist_pipeline.cli import run_stage
from mnist_pipeline.config import load_params

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")


def main() -> None:
    data = load_params().data
    raw = {key: RAW_DIR / f.name for key, f in data.files.items()}
    full_train = dataset.pair(
        idx.read_images(raw["train_images"]), idx.read_labels(raw["train_labels"]), "train"
    )
    test = dataset.pair(
        idx.read_images(raw["test_images"]), idx.read_labels(raw["test_labels"]), "t10k"
    )
    train_idx, val_idx = dataset.stratified_split(full_train.labels, data.val_size, data.split_seed)
    splits = {
        "train": dataset.Split(full_train.images[train_idx], full_train.labels[train_idx]),
        "val": dataset.Split(full_train.images[val_idx], full_train.labels[val_idx]),
        "test": test,
    }
    dataset.save(splits, PROCESSED_DIR)
    print({name: len(s) for name, s in splits.items()})


if __name__ == "__main__":
    run_stage(main, idx.IDXError, FileNotFoundError, ValueError)
