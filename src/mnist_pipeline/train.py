"""Stage `train`: fit the configured model inside an MLflow run, save it and publish it.

    python -m mnist_pipeline.train [--params params.yaml] [-q | -v]    # what dvc.yaml runs

It reads its params file only, and writes models/. Ad-hoc runs and sweeps over conf/
(`python -m mnist_pipeline.adhoc key=value`, `-m`) run the same recipe, `train` below, and write
into Hydra's own output folder instead.
"""

from __future__ import annotations

import gc

if __name__ == "__main__":  # a command: no garbage collection while importing (runtime/command.py)
    gc.disable()

import argparse
from collections.abc import Callable
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf import DictConfig

from mnist_pipeline.config.checks import ConfigError, check_training
from mnist_pipeline.config.guard import ParamsSnapshot, check_baseline
from mnist_pipeline.config.params import PARAMS_FILE
from mnist_pipeline.data import splits
from mnist_pipeline.runtime.command import run_stage
from mnist_pipeline.tracking.epochs import EpochMetrics
from mnist_pipeline.tracking.run import training_run
from mnist_pipeline.tracking.store import TrackingError
from mnist_pipeline.training import outputs
from mnist_pipeline.training.build import build
from mnist_pipeline.training.resume import Resume
from mnist_pipeline.utils.paths import PIPELINE, PROCESSED_DIR, Outputs


def train(
    cfg: DictConfig,
    out: Outputs = PIPELINE,
    data_dir: Path = PROCESSED_DIR,
    before_save: Callable[[], None] = lambda: None,
) -> bool:
    """Build data, model, callbacks and Trainer; fit; save and publish the model. Returns whether
    this process wrote the outputs (under DDP, only rank 0 does). `before_save` may refuse to
    write them (the stage checks that params.yaml did not change meanwhile)."""
    for name in ("train", "val", "nondigits"):  # damaged data fails here, before any run opens
        splits.load(data_dir, name)
    # The pipeline goes on with an interrupted training of the same config and data; ad-hoc runs,
    # each in a fresh folder, start afresh.
    resume = Resume.pipeline(cfg, data_dir) if out == PIPELINE else Resume.off()
    epochs = EpochMetrics()
    # Built before the run opens: the Trainer knows this process's global rank (from torchrun,
    # SLURM or Lightning's own launcher), and only rank 0 tracks and writes.
    fit = build(cfg, data_dir, [epochs, resume])
    with training_run(cfg, data_dir, out, resume.run_id, fit.trainer.is_global_zero) as run_id:
        resume.fit(fit, run_id)
        if not fit.trainer.is_global_zero:
            return False
        model = fit.module.model.cpu()
        before_save()
        outputs.save(cfg, out, data_dir, model, epochs.history)
        outputs.publish(cfg, out, data_dir, epochs)
    resume.done()
    return True


def stage(params: Path) -> None:
    """The DVC stage: everything checked before any run opens or any output is replaced (DVC keeps
    the last good ones in place: `persist` in dvc.yaml); params.yaml checked unchanged before the
    outputs are written and again at the end (two `dvc exp run` in one workspace)."""
    check_baseline()  # under `dvc exp run`: refuse to drop hand edits of params.yaml
    snapshot = ParamsSnapshot.read(params)
    check_training(snapshot.config, PROCESSED_DIR)
    train(snapshot.config, before_save=lambda: snapshot.check("the model about to be saved"))
    snapshot.check("the model and curves just saved")


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline.train",
        description="The DVC stage train: fit the model of a params file and save it to models/.",
        usage="%(prog)s [--params FILE] [-q | -v]\n"
        "ad-hoc runs and sweeps: python -m mnist_pipeline.adhoc key=value ... [-m]",
    )
    parser.add_argument(
        "--params", type=Path, default=PARAMS_FILE, metavar="FILE",
        help=f"the resolved config to train (default {PARAMS_FILE})",
    )  # fmt: skip
    return parser


# What a training can refuse: each is one paragraph for the user, never a traceback.
EXPECTED = (InstantiationException, FileNotFoundError, ConfigError, FloatingPointError)
EXPECTED += (splits.DataError, TrackingError)

if __name__ == "__main__":
    run_stage(stage, *EXPECTED, parser=arguments())
