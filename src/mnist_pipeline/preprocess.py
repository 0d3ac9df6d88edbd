"""DVC stage `preprocess`: decode and validate the IDX files, split, and write compact arrays;
draw the pictures that are no digit, which the "not sure" rule learns to refuse; and add your own
digits from data/yours/, in splits of their own."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from mnist_pipeline.config.checks import check_split
from mnist_pipeline.config.params import load_params
from mnist_pipeline.data import idx, nondigits, splits, yours
from mnist_pipeline.runtime.command import run_stage
from mnist_pipeline.serving.images import ImageError, load, read, stored, to_mnist
from mnist_pipeline.utils.paths import PROCESSED_DIR, RAW_DIR

NON_DIGITS = 3_000  # at most; a fifth of the examples for tiny datasets


def read_split(images_file: str, labels_file: str) -> splits.Split:
    images, labels = idx.read_examples(RAW_DIR / images_file, RAW_DIR / labels_file)
    return splits.Split(images, labels.astype(np.int64))


def nondigit_split(count: int, seed: int) -> splits.Split:
    """`count` pictures that are no digit (`data/nondigits.py`), made into MNIST's format as
    predict makes a user's file: generated once per dataset, not in every training."""
    images = []
    for _, picture in nondigits.generate(count, seed):
        with contextlib.suppress(ImageError):  # blank: it would never reach the network
            images.append(stored(to_mnist(picture)))
    return splits.Split(np.stack(images), np.full(len(images), splits.NOT_A_DIGIT))


YOUR_SPLITS = {"yours", "yours_heldout"}


def your_splits(folder: Path) -> dict[str, splits.Split]:
    """Your own digits (`data/yours.py`) made into MNIST's format as predict makes a file:
    `yours` to train on, `yours_heldout` to test on, split by content hash; none while the
    folder is empty, so the pipeline is then what it is without them."""
    found = yours.pictures(folder)
    held = yours.held_out(found)
    parts = {}
    for name, testing in (("yours", False), ("yours_heldout", True)):
        chosen = [(d, path) for d, digest, path in found if (digest in held) == testing]
        if chosen:
            pixels = [load(read(path), str(path)) for _, path in chosen]
            images = stored(np.stack(pixels))
            parts[name] = splits.Split(images, np.array([d for d, _ in chosen], dtype=np.int64))
    return parts


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
    parts["nondigits"] = nondigit_split(min(NON_DIGITS, len(train_idx) // 4), data.split_seed)
    parts |= your_splits(yours.YOURS)
    for name in YOUR_SPLITS - parts.keys():  # none of yours (any more): none left behind
        (PROCESSED_DIR / f"{name}.npz").unlink(missing_ok=True)
    splits.save(parts, PROCESSED_DIR)
    print("examples per split:", {name: len(s) for name, s in parts.items()})


if __name__ == "__main__":
    run_stage(main, idx.IDXError, FileNotFoundError, ValueError)  # ImageError is a ValueError
