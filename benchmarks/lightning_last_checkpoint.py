"""Resuming a killed training: Lightning's own `ckpt_path="last"` against `training/resume.py`.

Each arm trains lenet5 for 4 short epochs on data/processed (`make repro`), once whole and once
killed after epoch 2 then resumed in a fresh Trainer, and prints whether the resumed weights equal
the whole run's, bit for bit, and what a last checkpoint cut short (a kill mid-write) does.

    python benchmarks/lightning_last_checkpoint.py
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.callbacks import ModelCheckpoint

from mnist_pipeline.config.params import compose
from mnist_pipeline.data.datamodule import MNISTDataModule
from mnist_pipeline.model.classifier import Classifier
from mnist_pipeline.training.resume import Resume
from mnist_pipeline.utils.paths import PROCESSED_DIR

OVERRIDES = [
    "model=lenet5",  # dropout: a resume that redraws the random numbers trains other weights
    "trainer.max_epochs=4",
    "+trainer.limit_train_batches=30",
    "+trainer.limit_val_batches=5",
    "trainer.enable_progress_bar=false",
]


class Killed(Exception):
    pass


class KillBeforeEpoch(pl.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise Killed


def fit(callbacks: list[pl.Callback], ckpt_path: str | Path | None = None) -> pl.LightningModule:
    """build()'s setup, with Lightning's own checkpointing where a ModelCheckpoint is given."""
    cfg = compose(OVERRIDES)
    pl.seed_everything(cfg.seed, verbose=False)
    data = MNISTDataModule(PROCESSED_DIR, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed)
    module = Classifier(
        instantiate(cfg.model), instantiate(cfg.optimizer), instantiate(cfg.scheduler)
    )
    lightnings = any(isinstance(c, ModelCheckpoint) for c in callbacks)
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=False, enable_checkpointing=lightnings
    )
    with contextlib.suppress(Killed):
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path, weights_only=True)
    return module


def lightning(folder: Path, kill: list[pl.Callback]) -> pl.LightningModule:
    """Lightning's way: a last.ckpt every epoch, and `ckpt_path="last"` to go on from it."""
    return fit([ModelCheckpoint(dirpath=folder, save_last=True), *kill], "last")


def ours(folder: Path, kill: list[pl.Callback]) -> pl.LightningModule:
    resume = Resume(folder, "fp")
    return fit([resume, *kill], resume.interrupted.checkpoint if resume.interrupted else None)


def same(a: pl.LightningModule, b: pl.LightningModule) -> tuple[bool, float]:
    x, y = a.state_dict(), b.state_dict()
    return all(torch.equal(x[k], y[k]) for k in x), max((x[k] - y[k]).abs().max().item() for k in x)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="last-checkpoint-"))
    for name, arm in (("ckpt_path='last'", lightning), ("resume.py", ours)):
        whole = arm(root / name / "whole", [])
        arm(root / name / "killed", [KillBeforeEpoch(2)])
        resumed = arm(root / name / "killed", [])  # a fresh Trainer goes on
        equal, diff = same(whole, resumed)
        print(f"{name}: resumed weights equal the whole run's: {equal} (max |diff| {diff:.2e})")
        last = root / name / "killed" / "last.ckpt"
        last.write_bytes(last.read_bytes()[:1000])  # a kill mid-write, without the durable replace
        try:
            arm(root / name / "killed", [])
            print(f"{name}: a last.ckpt cut short: set aside, training started afresh")
        except Exception as e:
            print(f"{name}: a last.ckpt cut short: {type(e).__name__}: {str(e)[:70]}")


if __name__ == "__main__":
    main()
