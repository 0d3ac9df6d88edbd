"""Stage `train`: fit the configured model inside an MLflow run and save it; also ad-hoc runs.

    python -m mnist_pipeline.train --params params.yaml   # the DVC stage (what dvc.yaml runs)
    python -m mnist_pipeline.train model=cnn trainer.max_epochs=2           # an ad-hoc run
    python -m mnist_pipeline.train -m model=mlp,lenet5 optimizer.lr=0.001,0.01  # a sweep

The stage reads params.yaml only and writes models/; ad-hoc runs (`adhoc.py`) compose conf/ with
their overrides and write into Hydra's own output folder, never into the DVC-tracked models/ or
reports/. Both run the recipe below and track to MLflow the same way.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf import DictConfig

from mnist_pipeline.cli import run_stage
from mnist_pipeline.config import load_params
from mnist_pipeline.paths import PIPELINE, PROCESSED_DIR, Outputs
from mnist_pipeline.preflight import ConfigError, check_training
from mnist_pipeline.tracking.epochs import EpochMetrics
from mnist_pipeline.tracking.run import training_run
from mnist_pipeline.tracking.store import TrackingError
from mnist_pipeline.training import outputs
from mnist_pipeline.training.build import build
from mnist_pipeline.training.resume import fit_from, pipeline_resume


def train(cfg: DictConfig, out: Outputs = PIPELINE, data_dir: Path = PROCESSED_DIR) -> bool:
    """Build data, model, callbacks and Trainer; fit; save and publish the model. Returns whether
    this process wrote the outputs (under DDP, only rank 0 does)."""
    # The pipeline resumes an interrupted training of the same config and data; ad-hoc runs,
    # each in a fresh folder, start afresh.
    resume = pipeline_resume(cfg, data_dir) if out == PIPELINE else None
    interrupted = resume.find() if resume else None

    with training_run(cfg, data_dir, out, interrupted and interrupted.run_id) as run_id:
        epochs = EpochMetrics()
        checkpoints = [resume.start(run_id)] if resume else []
        fit = build(cfg, data_dir, [epochs, *checkpoints])
        fit_from(fit, interrupted)  # loads the checkpoint, if any, as data only
        if not fit.trainer.is_global_zero:
            return False
        model = fit.module.model.cpu()
        outputs.save(cfg, out, data_dir, model, epochs.history)
        outputs.publish(cfg, out, data_dir, epochs)
        if resume:
            resume.done()
    return True


def stage() -> None:
    cfg = load_params(sys.argv[sys.argv.index("--params") + 1])
    check_training(cfg, PROCESSED_DIR)
    train(cfg)


if __name__ == "__main__":
    if "--params" in sys.argv:
        expected = (InstantiationException, FileNotFoundError, ConfigError, FloatingPointError)
        run_stage(stage, *expected, TrackingError)
    else:  # an ad-hoc run or sweep, never part of the DVC stage. Run by name, not imported:
        # `adhoc` imports this module's recipe, and the train stage must not depend on its code.
        runpy.run_module("mnist_pipeline.adhoc", run_name="__main__", alter_sys=True)
