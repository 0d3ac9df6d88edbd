"""The Lightning data module: processed splits held in memory, served as sliced batches."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from mnist_pipeline import dataset
from mnist_pipeline.tensors import TensorBatches, load_split


class MNISTDataModule(pl.LightningDataModule):
    def __init__(
        self, data_dir: str | Path, batch_size: int, eval_batch_size: int, seed: int = 0
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed

    def setup(self, stage: str) -> None:
        stats = dataset.load_stats(self.data_dir)
        names = ("train", "val") if stage == "fit" else (stage,)
        self.splits = {name: load_split(self.data_dir, name, stats) for name in names}

    def train_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits["train"], self.batch_size, shuffle=True, seed=self.seed)

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(*self.splits["val"], self.eval_batch_size)
