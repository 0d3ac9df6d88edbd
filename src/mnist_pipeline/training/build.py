"""Everything `trainer.fit` needs, built from the config: data module, Lightning module, Trainer."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ProgressBar

from mnist_pipeline.data.datamodule import MNISTDataModule
from mnist_pipeline.model.classifier import Classifier


class Fit(NamedTuple):
    trainer: pl.Trainer
    module: Classifier
    datamodule: MNISTDataModule


def build(cfg: DictConfig, data_dir: Path, callbacks: list[pl.Callback]) -> Fit:
    """Seeded, so two builds are identical. MLflow is not imported here, so the benchmark can
    build the train stage's exact setup on a bare GPU box."""
    pl.seed_everything(cfg.seed, verbose=False)
    data = cfg.data
    datamodule = MNISTDataModule(
        data_dir, data.batch_size, data.eval_batch_size, cfg.seed, data.yours_weight
    )
    module = Classifier(
        instantiate(cfg.model), instantiate(cfg.optimizer), instantiate(cfg.scheduler)
    )
    configured = instantiate(cfg.trainer.get("callbacks") or [])
    if not cfg.trainer.get("enable_progress_bar", True):  # the switch wins over a configured bar
        configured = [c for c in configured if not isinstance(c, ProgressBar)]
    trainer = instantiate(
        cfg.trainer, callbacks=[*configured, *callbacks], logger=False, enable_checkpointing=False
    )
    return Fit(trainer, module, datamodule)
