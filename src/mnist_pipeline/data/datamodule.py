"""The Lightning data module: processed splits held in memory, served as sliced batches.

On a GPU the whole dataset moves to the device once (MNIST is 180 MB as float32), so batches are
sliced there and no step waits for a host-to-device copy. Under DDP each process takes its own
shard of every epoch's shuffle.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from mnist_pipeline.data import splits
from mnist_pipeline.data.tensors import TensorBatches, load_split


class MNISTDataModule(pl.LightningDataModule):
    def __init__(
        self, data_dir: str | Path, batch_size: int, eval_batch_size: int, seed: int = 0
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed

    def setup(self, stage: str) -> None:
        stats = splits.load_stats(self.data_dir)
        device = self.trainer.strategy.root_device if self.trainer else None
        names = {"fit": ("train", "val"), "validate": ("val",)}[stage]
        self.splits = {
            name: tuple(t.to(device) for t in load_split(self.data_dir, name, stats))
            for name in names
        }

    def _batches(self, name: str, batch_size: int, shuffle: bool) -> TensorBatches:
        rank, world = (
            (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        )
        return TensorBatches(
            *self.splits[name], batch_size, shuffle=shuffle, seed=self.seed, rank=rank, world=world
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", self.eval_batch_size, shuffle=False)
