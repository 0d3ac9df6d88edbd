"""DVC stage `train`: fit the configured model on data/processed/ and save it to models/."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from mnist_pipeline import checkpoint, dataset
from mnist_pipeline.cli import run_stage
from mnist_pipeline.config import load_params
from mnist_pipeline.datamodule import MNISTDataModule
from mnist_pipeline.lit_module import Classifier

PROCESSED_DIR = Path("data/processed")
MODEL_FILE = Path("models/model.pt")


class Fit(NamedTuple):
    trainer: pl.Trainer
    module: Classifier
    datamodule: MNISTDataModule


def build(cfg: DictConfig, data_dir: Path, callbacks: list[pl.Callback]) -> Fit:
    """Everything `trainer.fit` needs, from the config; seeded, so two builds are identical."""
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule = MNISTDataModule(data_dir, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed)
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


def train(cfg: DictConfig, data_dir: Path = PROCESSED_DIR, model_file: Path = MODEL_FILE) -> None:
    """Fit `cfg.model` inside a new MLflow run and save the weights with what rebuilds them."""
    # Imported here so that `build` also works where MLflow is not installed (a bare GPU box).
    from mnist_pipeline import tracking
    from mnist_pipeline.callbacks import MLflowEpochMetrics

    with tracking.new_run(cfg):  # before seeding: MLflow draws the run's random name from `random`
        fit = build(cfg, data_dir, [MLflowEpochMetrics()])
        fit.trainer.fit(fit.module, datamodule=fit.datamodule)
        if not fit.trainer.is_global_zero:
            return
        model = fit.module.model.cpu()
        stats = dataset.load_stats(data_dir)
        checkpoint.save(model_file, model, OmegaConf.to_container(cfg.model, resolve=True), stats)
        example = dataset.load(data_dir, "val").images[:5].astype("float32")
        tracking.log_model(model, stats, example)


def main() -> None:
    train(load_params())


if __name__ == "__main__":
    run_stage(main)
