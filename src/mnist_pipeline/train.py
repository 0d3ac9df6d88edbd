"""DVC stage `train`: fit the configured model on data/processed/ and save it to models/."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_pipeline import checkpoint, dataset, tracking
from mnist_pipeline.callbacks import MLflowEpochMetrics
from mnist_pipeline.cli import run_stage
from mnist_pipeline.config import load_params
from mnist_pipeline.datamodule import MNISTDataModule
from mnist_pipeline.lit_module import Classifier

PROCESSED_DIR = Path("data/processed")
MODEL_FILE = Path("models/model.pt")


def train(cfg: DictConfig, data_dir: Path = PROCESSED_DIR, model_file: Path = MODEL_FILE) -> None:
    """Fit `cfg.model` inside a new MLflow run and save the weights with what rebuilds them."""
    with tracking.new_run(cfg):  # before seeding: MLflow draws the run's random name from `random`
        pl.seed_everything(cfg.seed, verbose=False)
        datamodule = MNISTDataModule(
            data_dir, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed
        )
        module = Classifier(
            instantiate(cfg.model), instantiate(cfg.optimizer), instantiate(cfg.scheduler)
        )
        trainer: pl.Trainer = instantiate(
            cfg.trainer, callbacks=[MLflowEpochMetrics()], logger=False, enable_checkpointing=False
        )
        trainer.fit(module, datamodule=datamodule)
        stats = dataset.load_stats(data_dir)
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        checkpoint.save(model_file, module.model, model_cfg, stats)
        example = dataset.load(data_dir, "val").images[:5].astype("float32")
        tracking.log_model(module.model, stats, example)


def main() -> None:
    train(load_params())


if __name__ == "__main__":
    run_stage(main)
