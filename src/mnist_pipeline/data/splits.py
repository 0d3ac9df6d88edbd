"""The processed dataset: a stratified train/val split, normalisation statistics, compact arrays.

Each split is one `.npz` holding uint8 `images` (N, 28, 28) and int64 `labels` (N,): small on
disk, loaded in one read, no pickles. `stats.json` holds the normalisation statistics (training
split only, so nothing leaks from validation or test) and the counts a reader can check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_pipeline.atomic import atomic_path, write_json


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
    if not 0 < val_size < len(labels):
        raise ValueError(f"data.val_size={val_size} must be between 1 and {len(labels) - 1}")
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


def load(out_dir: Path, name: str) -> Split:
    with np.load(out_dir / f"{name}.npz") as f:
        return Split(f["images"], f["labels"])


def load_stats(out_dir: Path) -> dict:
    return json.loads((out_dir / "stats.json").read_text())
