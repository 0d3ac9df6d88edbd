"""Tiny synthetic MNIST in real IDX/gzip form, for tests that must not touch the real data."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from mnist_pipeline.data import idx, splits
from mnist_pipeline.preprocess import nondigit_split

NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` 28x28 uint8 images: a bright 6x6 square at a place that depends on the class, in noise.

    Easy enough that a few epochs of any model here learn it, so pipeline tests can check accuracy.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        row, col = 3 + 8 * (label // 4), 3 + 8 * (label % 4)
        images[i, row : row + 6, col : col + 6] = 255
    return images, labels.astype(np.uint8)


def mirror_files(n_train: int = 600, n_test: int = 200) -> dict[str, bytes]:
    """The four MNIST files as a mirror serves them: IDX bytes, gzip-compressed, by `.gz` name."""
    train_x, train_y = synthetic_digits(n_train, seed=1)
    test_x, test_y = synthetic_digits(n_test, seed=2)
    raw = {
        NAMES["train_images"]: idx.encode(train_x),
        NAMES["train_labels"]: idx.encode(train_y),
        NAMES["test_images"]: idx.encode(test_x),
        NAMES["test_labels"]: idx.encode(test_y),
    }
    return {f"{name}.gz": gzip.compress(data, mtime=0) for name, data in raw.items()}


def checksums(files: dict[str, bytes]) -> dict[str, str]:
    """sha256 of each file's decompressed bytes, keyed by its config key."""
    return {
        key: hashlib.sha256(gzip.decompress(files[f"{name}.gz"])).hexdigest()
        for key, name in NAMES.items()
    }


def checksum_overrides(files: dict[str, bytes]) -> list[str]:
    """Hydra overrides that point `data.files.*.sha256` at the synthetic data."""
    return [f"data.files.{key}.sha256={digest}" for key, digest in checksums(files).items()]


def write_processed(folder: Path, n_train: int = 256, n_eval: int = 64) -> Path:
    """A small processed dataset, as the preprocess stage writes it (val and test share digits)."""
    train_x, train_y = synthetic_digits(n_train, seed=1)
    eval_x, eval_y = synthetic_digits(n_eval, seed=2)
    evaluation = splits.Split(eval_x, eval_y.astype(np.int64))
    parts = {"train": splits.Split(train_x, train_y.astype(np.int64)), "val": evaluation}
    pictures = nondigit_split(n_train // 4, seed=3)
    splits.save({**parts, "test": evaluation, "nondigits": pictures}, folder)
    return folder
