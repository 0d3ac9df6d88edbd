"""Processed arrays as tensors, and batches sliced straight from them.

Slicing whole batches out of one in-memory tensor replaces a `DataLoader` over a `TensorDataset`,
whose per-sample indexing and collation cost more than a LeNet-5 step on a CPU. The images stay
uint8 and each batch is normalised as it is sliced: the training split as float32 would hold four
times the memory (and more while being converted), for arithmetic that costs nothing per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from mnist_pipeline.data import splits


def normalise(images: Tensor, mean: float, std: float) -> Tensor:
    """uint8 (N, 28, 28) → float32 (N, 1, 28, 28) with the training split's mean and std."""
    return (images.unsqueeze(1).float() / 255.0).sub_(mean).div_(std)


def load_split(data_dir: Path, name: str) -> tuple[Tensor, Tensor]:
    """uint8 images (N, 28, 28) and int64 labels: batch them with `normaliser(stats)`."""
    split = splits.load(data_dir, name)
    return torch.from_numpy(split.images), torch.from_numpy(split.labels)


def normaliser(stats: dict) -> Callable[[Tensor], Tensor]:
    """`normalise` with the training split's statistics, for `TensorBatches(prepare=...)`."""
    return partial(normalise, mean=stats["mean"], std=stats["std"])


class TensorBatches:
    """An iterable of (images, labels) batches, sliced on whatever device the tensors live on;
    `prepare` turns each batch of images into the network's input.

    With `shuffle`, each pass draws a fresh permutation from `generator` (a new one seeded with
    `seed` if none is given; pass one whose state is saved and restored to resume mid-sequence);
    with `world > 1`, this process takes every `world`-th example of it starting at `rank`. For
    training (`shuffle`) the last `n % world` examples are left out, so that every process runs the
    same number of steps (DDP's gradient sync would wait forever otherwise); for evaluation every
    example is served once, to exactly one process (some get one more), so that summed metrics
    count each example once.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        generator: torch.Generator | None = None,
        prepare: Callable[[Tensor], Tensor] = lambda images: images,
    ) -> None:
        self.images, self.labels, self.prepare = images, labels, prepare
        self.batch_size, self.shuffle = batch_size, shuffle
        self.rank, self.world = rank, world
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)

    def _used(self) -> int:
        """How many examples this pass serves, across all processes."""
        n = len(self.labels)
        return n - n % self.world if self.shuffle else n

    def __len__(self) -> int:
        mine = len(range(self.rank, self._used(), self.world))  # this process's examples
        return -(-mine // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        if not self.shuffle and self.world == 1:
            for start in range(0, n, self.batch_size):
                end = start + self.batch_size
                yield self.prepare(self.images[start:end]), self.labels[start:end]
            return
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order[: self._used()][self.rank :: self.world].to(self.labels.device)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.prepare(self.images[index]), self.labels[index]
