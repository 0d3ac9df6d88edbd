"""The processed dataset: a stratified train/val split, normalisation statistics, compact arrays.

Each split is one `.npz` holding uint8 `images` (N, 28, 28) and int64 `labels` (N,): small on
disk, loaded in one read, no pickles. Beside MNIST's train, val and test, `nondigits` holds
pictures that are no digit (label `NOT_A_DIGIT`), for the "not sure" rule (`training/doubt.py`).
`stats.json` holds the normalisation statistics (training split only, so nothing leaks from
validation or test) and the counts a reader can check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_pipeline.utils.atomic import atomic_path, write_json

NOT_A_DIGIT = 10


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, 28, 28)
    labels: np.ndarray  # int64 (N,)

    def take(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.labels[index])

    def __len__(self) -> int:
        return len(self.labels)


def stratified_split(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with `val_size` examples whose class mix matches the whole set's.

    Per-class quotas are floor(val_size * share) topped up by largest remainder, so they sum to
    exactly `val_size`.
    """
    whole = isinstance(val_size, int) and not isinstance(val_size, bool)
    if not whole or not 0 < val_size < len(labels):
        raise ValueError(
            f"data.val_size={val_size!r} must be between 1 and {len(labels) - 1} (a whole number)"
        )
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = val_size * counts / len(labels)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(quota - exact)[: val_size - quota.sum()]] += 1
    val = np.concatenate(
        [
            rng.permutation(np.flatnonzero(labels == c))[:q]
            for c, q in zip(classes, quota, strict=True)
        ]
    )
    val.sort()
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of pixels scaled to [0, 1]."""
    scaled = images.astype(np.float64) / 255.0
    return float(scaled.mean()), float(scaled.std())


def save(splits: dict[str, Split], out_dir: Path) -> None:
    mean, std = pixel_stats(splits["train"].images)
    for name, split in splits.items():
        with atomic_path(out_dir / f"{name}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, images=split.images, labels=split.labels)
    write_json(
        out_dir / "stats.json",
        {
            "mean": mean,
            "std": std,
            "counts": {name: len(s) for name, s in splits.items()},
            "class_counts": {
                name: np.bincount(s.labels, minlength=10).tolist() for name, s in splits.items()
            },
        },
    )


class DataError(ValueError):
    """A processed split that is not what preprocess writes; the message names the file."""


def load(out_dir: Path, name: str) -> Split:
    """One split, checked: a damaged file is named as such (numpy alone would say "Cannot load
    file containing pickled data", as if the file held objects) and told how to remake."""
    path = out_dir / f"{name}.npz"
    remake = (
        "restore it with `dvc checkout data/processed` or remake it with `dvc repro -f preprocess`"
    )
    try:
        with open(path, "rb") as f:
            archive = f.read(4) == b"PK\x03\x04"  # what np.savez writes: a zip
        if not archive:
            raise DataError(f"{path} is not a processed split (not an .npz archive): {remake}")
        with np.load(path, allow_pickle=False) as f:
            split = Split(f["images"], f["labels"])
    except FileNotFoundError:
        raise DataError(f"{path} is missing: run `dvc repro preprocess`") from None
    except DataError:
        raise
    except Exception as e:  # a truncated zip, missing arrays, arrays holding objects
        detail = " ".join(str(e).split())[:200]
        raise DataError(
            f"{path} is not a processed split ({type(e).__name__}: {detail}): {remake}"
        ) from None
    images, labels = split.images, split.labels
    highest = NOT_A_DIGIT if name == "nondigits" else 9
    if not (
        images.dtype == np.uint8
        and images.ndim == 3
        and images.shape[1:] == (28, 28)
        and labels.dtype == np.int64
        and labels.shape == (len(images),)
        and (len(labels) == 0 or 0 <= labels.min() <= labels.max() <= highest)
    ):
        raise DataError(
            f"{path} holds images {images.dtype} {images.shape} and labels {labels.dtype} "
            f"{labels.shape}, not uint8 (N, 28, 28) images with int64 (N,) labels 0-{highest}: "
            "remake it "
            "with `dvc repro -f preprocess`"
        )
    return split


def load_stats(out_dir: Path) -> dict:
    return json.loads((out_dir / "stats.json").read_text())
