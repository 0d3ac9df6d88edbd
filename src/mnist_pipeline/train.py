"""Training: the DVC stage `train`, and ad-hoc Hydra runs and sweeps.

    python -m mnist_pipeline.train --params params.yaml   # the DVC stage (what dvc.yaml runs)
    python -m mnist_pipeline.train model=cnn trainer.max_epochs=2           # an ad-hoc run
    python -m mnist_pipeline.train -m model=mlp,lenet5 optimizer.lr=0.001,0.01  # a sweep

The stage reads params.yaml only and writes models/; ad-hoc runs (`mnist_pipeline.explore`)
compose conf/ with their overrides and write into Hydra's own output folder, never into the
DVC-tracked models/ or reports/. Both track to MLflow the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from mnist_pipeline import checkpoint, dataset
from mnist_pipeline.atomic import write_text
from mnist_pipeline.cli import run_stage
from mnist_pipeline.config import ConfigError, check_values, load_params, to_yaml
from mnist_pipeline.datamodule import MNISTDataModule
from mnist_pipeline.lit_module import Classifier
from mnist_pipeline.paths import CHECKPOINTS, PIPELINE, PROCESSED_DIR, Outputs
from mnist_pipeline.resume import EpochCheckpoint, Resume


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


def train(cfg: DictConfig, out: Outputs = PIPELINE, data_dir: Path = PROCESSED_DIR) -> bool:
    """Fit `cfg.model` inside a new MLflow run; save the weights with what rebuilds them, and the
    per-epoch curves (`training.csv` for `dvc plots`, `training.png` for MLflow). Returns whether
    this process wrote them (under DDP, only rank 0 does)."""
    # Imported here so that `build` also works where MLflow is not installed (a bare GPU box).
    from mnist_pipeline import plots, tracking
    from mnist_pipeline.callbacks import EpochMetrics

    # The pipeline resumes an interrupted training of the same config and data; ad-hoc runs,
    # each in a fresh folder, start afresh.
    resume = None
    if out == PIPELINE:
        digest = tracking.processed_data_digest(data_dir)
        resume = Resume(CHECKPOINTS, Resume.fingerprint_of(to_yaml(cfg), digest))
    interrupted = resume.find() if resume else None
    resume_id = interrupted.run_id if interrupted else None

    with tracking.new_run(cfg, data_dir, out.run_file, resume_id) as run_id:  # before seeding
        epochs = EpochMetrics()
        callbacks: list[pl.Callback] = [epochs]
        if resume:
            if run_id:  # the process that tracks (rank 0) notes the run
                resume.start(run_id)
            callbacks.append(EpochCheckpoint(resume))
        fit = build(cfg, data_dir, callbacks)
        ckpt = interrupted.checkpoint if interrupted else None
        fit.trainer.fit(fit.module, datamodule=fit.datamodule, ckpt_path=ckpt)
        if not fit.trainer.is_global_zero:
            return False
        model = fit.module.model.cpu()
        stats = dataset.load_stats(data_dir)
        checkpoint.save(out.model, model, OmegaConf.to_container(cfg.model, resolve=True), stats)
        write_csv(out.reports / "training.csv", epochs.history)
        plots.training_curves(epochs.history, out.reports / "training.png")
        example = dataset.load(data_dir, "val").images[:5].astype("float32")
        epochs.log_missed()
        try:
            tracking.log_artifacts(out.reports, ["training.png"])
            tracking.log_model(model, stats, example)
        except Exception as e:
            raise tracking.TrackingError(
                f"training finished and {out.model} is saved, but MLflow at "
                f"{tracking.tracking_uri(cfg.tracking.uri)} took neither the training curves nor "
                f"the model ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
            ) from e
        if epochs.unlogged:
            raise tracking.TrackingError(
                f"training finished and {out.model} is saved, but the metrics of epochs "
                f"{epochs.unlogged} did not reach MLflow (they are in {out.reports}/training.csv)"
            )
        if resume:
            resume.done()
    return True


def write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [",".join(columns)] + [",".join(f"{row.get(c, '')}" for c in columns) for row in rows]
    write_text(path, "\n".join(lines) + "\n")


def check(cfg: DictConfig, data_dir: Path = PROCESSED_DIR) -> None:
    """Fail on a bad config (a wrong type, a value out of range, maps shrunk below 1x1, an
    optimizer argument torch refuses) or missing data, before any run opens or any work starts."""
    check_values(cfg)
    instantiate(cfg.model)
    try:
        instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    except ValueError as e:  # torch's own checks, e.g. "Invalid momentum value: -1"
        raise ConfigError(f"optimizer: {e} ({to_yaml(cfg.optimizer).strip()})") from e
    if not (data_dir / "stats.json").is_file():
        raise FileNotFoundError(f"{data_dir} has no processed data: run `dvc repro preprocess`")


def stage() -> None:
    cfg = load_params(sys.argv[sys.argv.index("--params") + 1])
    check(cfg)
    train(cfg)


if __name__ == "__main__":
    if "--params" in sys.argv:
        from mnist_pipeline.tracking import TrackingError

        expected = (InstantiationException, FileNotFoundError, ConfigError, FloatingPointError)
        run_stage(stage, *expected, TrackingError)
    else:  # an ad-hoc run or sweep, never part of the DVC stage
        from mnist_pipeline.explore import main

        main()
