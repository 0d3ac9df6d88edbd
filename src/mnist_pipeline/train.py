"""Stage `train`: fit the configured model inside an MLflow run and save it; also ad-hoc runs.

    python -m mnist_pipeline.train --params params.yaml   # the DVC stage (what dvc.yaml runs)
    python -m mnist_pipeline.train model=cnn trainer.max_epochs=2           # an ad-hoc run
    python -m mnist_pipeline.train -m model=mlp,lenet5 optimizer.lr=0.001,0.01  # a sweep

The stage reads params.yaml only and writes models/; ad-hoc runs (`adhoc.py`) compose conf/ with
their overrides and write into Hydra's own output folder, never into the DVC-tracked models/ or
reports/. Both run the recipe below and track to MLflow the same way.
"""

from __future__ import annotations

import gc

if __name__ == "__main__":  # a command: no garbage collection while importing (runtime/command.py)
    gc.disable()

import runpy
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf import DictConfig

from mnist_pipeline.config.checks import ConfigError, check_training
from mnist_pipeline.config.guard import ParamsSnapshot, check_baseline
from mnist_pipeline.data import splits
from mnist_pipeline.runtime.command import run_stage
from mnist_pipeline.tracking.epochs import EpochMetrics
from mnist_pipeline.tracking.run import training_run
from mnist_pipeline.tracking.store import TrackingError
from mnist_pipeline.training import outputs
from mnist_pipeline.training.build import build
from mnist_pipeline.training.resume import EpochCheckpoint, fit_from, pipeline_resume
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
    for name in ("train", "val"):  # damaged data fails here, before any MLflow run opens
        splits.load(data_dir, name)
    # The pipeline resumes an interrupted training of the same config and data; ad-hoc runs,
    # each in a fresh folder, start afresh.
    resume = pipeline_resume(cfg, data_dir) if out == PIPELINE else None
    epochs = EpochMetrics()
    # Built before the run opens: the Trainer knows this process's global rank (from torchrun,
    # SLURM or Lightning's own launcher), and only rank 0 tracks and writes.
    fit = build(cfg, data_dir, [epochs, *([EpochCheckpoint(resume)] if resume else [])])
    interrupted = resume.find() if resume else None
    resume_id, tracks = interrupted and interrupted.run_id, fit.trainer.is_global_zero

    with training_run(cfg, data_dir, out, resume_id, tracks) as run_id:
        if resume:
            resume.note_run(run_id)
        fit_from(fit, interrupted)  # loads the checkpoint, if any, as data only
        if not fit.trainer.is_global_zero:
            return False
        model = fit.module.model.cpu()
        before_save()
        outputs.save(cfg, out, data_dir, model, epochs.history)
        outputs.publish(cfg, out, data_dir, epochs)
        if resume:
            resume.done()
    return True


def stage() -> None:
    """The DVC stage: everything checked before any run opens or any output is replaced (DVC keeps
    the last good ones in place: `persist` in dvc.yaml); params.yaml checked unchanged before the
    outputs are written and again at the end (two `dvc exp run` in one workspace)."""
    args = sys.argv[1:]
    given = args[args.index("--params") + 1 :][:1]
    if not given or given[0].startswith("-"):
        raise ConfigError(
            "--params needs the params file: `python -m mnist_pipeline.train --params params.yaml`"
        )
    check_baseline()  # under `dvc exp run`: refuse to drop hand edits of params.yaml
    params = ParamsSnapshot.read(given[0])
    check_training(params.config, PROCESSED_DIR)
    train(params.config, before_save=lambda: params.check("the model about to be saved"))
    params.check("the model and curves just saved")


# What a training can refuse: each is one paragraph for the user, never a traceback.
EXPECTED = (InstantiationException, FileNotFoundError, ConfigError, FloatingPointError)
EXPECTED += (splits.DataError, TrackingError)

if __name__ == "__main__":
    if "--params" in sys.argv:
        run_stage(stage, *EXPECTED)
    else:  # an ad-hoc run or sweep, never part of the DVC stage. Run by name, not imported:
        # `adhoc` imports this module's recipe, and the train stage must not depend on its code.
        runpy.run_module("mnist_pipeline.adhoc", run_name="__main__", alter_sys=True)
