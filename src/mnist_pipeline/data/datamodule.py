"""The Lightning data module: processed splits held in memory, served as sliced batches.

On a GPU the whole dataset moves to the device once (MNIST is 47 MB as uint8), so batches are
sliced and normalised there and no step waits for a host-to-device copy. Under DDP each process
takes its own shard of every epoch's shuffle.

The shuffles come from one generator that lives as long as the module, and its state is saved in
Lightning checkpoints: a resumed training goes on with the permutations the interrupted one would
have drawn next, not with epoch 0's again.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from mnist_pipeline.data import splits
from mnist_pipeline.data.tensors import TensorBatches, load_split, normaliser

SPLITS = {"fit": ("train", "val"), "validate": ("val",)}  # the splits each Lightning stage uses


class MNISTDataModule(pl.LightningDataModule):
    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        eval_batch_size: int,
        seed: int = 0,
        yours_weight: int = 1,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.yours_weight = yours_weight
        self.shuffles = torch.Generator().manual_seed(seed)

    def setup(self, stage: str) -> None:
        if stage not in SPLITS:
            raise ValueError(
                f"MNISTDataModule serves the stages {sorted(SPLITS)}, not {stage!r}: the test set "
                "is scored outside Lightning, by `python -m mnist_pipeline.evaluate`"
            )
        names = SPLITS[stage]
        self.prepare = normaliser(splits.load_stats(self.data_dir))
        device = self.trainer.strategy.root_device if self.trainer else None
        self.splits = {name: tuple(t.to(device) for t in self.load(name)) for name in names}

    def load(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A split; the training split with your own digits (`yours`, from data/yours/) added,
        each `yours_weight` times. Without them, MNIST's alone, as before they existed."""
        images, labels = load_split(self.data_dir, name)
        if name == "train" and (self.data_dir / "yours.npz").is_file():
            mine, digits = load_split(self.data_dir, "yours")
            images = torch.cat([images, mine.repeat(self.yours_weight, 1, 1)])
            labels = torch.cat([labels, digits.repeat(self.yours_weight)])
        return images, labels

    def _batches(self, name: str, batch_size: int, shuffle: bool) -> TensorBatches:
        rank, world = (
            (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        )
        return TensorBatches(
            *self.splits[name],
            batch_size,
            shuffle,
            rank=rank,
            world=world,
            generator=self.shuffles,
            prepare=self.prepare,
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", self.eval_batch_size, shuffle=False)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Saved in checkpoints: where the sequence of shuffles stands (a uint8 tensor)."""
        return {"shuffles": self.shuffles.get_state()}

    def load_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Lightning calls this on resuming, before it asks for the first training batch."""
        self.shuffles.set_state(state_dict["shuffles"])
