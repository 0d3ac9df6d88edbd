"""A Hydra multirun as one MLflow parent run with a child run per point of the sweep.

Hydra calls this callback around the whole sweep; each job's run (`run.training_run`) finds the
parent's id in the environment and nests under it, so the MLflow UI groups and compares them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_pipeline.tracking.store import connect

PARENT_ENV = "MNIST_SWEEP_PARENT_RUN"  # the parent run's id, for the sweep's jobs


class MLflowParentRun(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        connect(config.tracking)
        sweep = Path(config.hydra.sweep.dir).name
        overrides = " ".join(config.hydra.overrides.task)
        run = mlflow.MlflowClient().create_run(
            mlflow.get_experiment_by_name(config.tracking.experiment).experiment_id,
            run_name=f"sweep {sweep}",
            tags={"sweep.overrides": overrides, "sweep.dir": config.hydra.sweep.dir},
        )
        os.environ[PARENT_ENV] = run.info.run_id

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        run_id = os.environ.pop(PARENT_ENV, None)
        if run_id:
            mlflow.MlflowClient().set_terminated(run_id)
