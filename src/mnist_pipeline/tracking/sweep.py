"""A Hydra multirun as one MLflow parent run with a child run per point of the sweep.

Hydra calls this callback around the whole sweep, in the process that runs it, and around each
job, in the process that runs the job (the same one, a joblib worker or a submitit job). Each
job's run (`run.training_run`) finds the parent's id in the environment, which every launcher
hands its jobs (sbatch exports it), and nests under it. At the end the parent records the best
point: its overrides as `best.<key>` params, its scores as `best_<metric>` metrics, its run as
the `best.run_id` tag, and Optuna's `optimization_results.yaml` as an artifact.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import mlflow
from hydra.core.utils import JobReturn
from hydra.errors import CompactHydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from mlflow.entities import Metric, Param, RunTag
from omegaconf import DictConfig

from mnist_pipeline.tracking.store import TrackingError, connect
from mnist_pipeline.utils.paths import Outputs
from mnist_pipeline.utils.redact import redact

PARENT_ENV = "MNIST_SWEEP_PARENT_RUN"  # the parent run's id, for the sweep's jobs
# What a sweep optimizes (adhoc.py returns it): the validation accuracy of the saved model. Not
# the test accuracy: choosing among trials by it would tune to the test set and overstate it.
OBJECTIVE = "val_acc"
RESULTS = "optimization_results.yaml"  # written by the Optuna sweeper into the sweep's folder


class SweepNotStarted(CompactHydraException):
    """Hydra prints this as it is, one line, and exits 1 (it runs this callback outside the
    sweep's jobs, before any of the project's own error reporting)."""


class MLflowParentRun(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            connect(config.tracking)
        except TrackingError as e:  # the paragraph a stage prints, and no traceback
            raise SweepNotStarted(f"error: {e}") from None
        sweep = Path(config.hydra.sweep.dir).name
        overrides = redact(" ".join(config.hydra.overrides.task))  # `tracking.uri=` has tokens
        choices = config.hydra.runtime.choices
        run = mlflow.MlflowClient().create_run(
            mlflow.get_experiment_by_name(config.tracking.experiment).experiment_id,
            run_name=f"sweep {sweep}",
            tags={
                "sweep.overrides": overrides,
                "sweep.dir": config.hydra.sweep.dir,
                "sweep.launcher": choices.get("hydra/launcher", ""),
                "sweep.sweeper": choices.get("hydra/sweeper", ""),
            },
        )
        os.environ[PARENT_ENV] = run.info.run_id
        atexit.register(end_if_open, run.info.run_id)  # a sweep that fails skips on_multirun_end

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Name the point's run after it: every run of a sweep is seeded alike, so MLflow would
        give them all the same random name."""
        if config.hydra.mode != RunMode.MULTIRUN or not os.environ.get(PARENT_ENV):
            return
        record = Outputs.under(Path(config.hydra.runtime.output_dir)).run_file
        if not record.is_file():  # the job failed before its run was recorded
            return
        run_id = json.loads(record.read_text())["run_id"]
        # One override a word (Hydra reads `[8,16]` as it reads `[8, 16]`), so it splits back.
        point = redact(" ".join(o.replace(" ", "") for o in job_return.overrides or []))
        tags = {"sweep.point": point, "sweep.job": str(config.hydra.job.num)}
        client = mlflow.MlflowClient()  # the job's run has just set the store
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        client.update_run(run_id, name=f"#{config.hydra.job.num} {point}"[:250])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        run_id = os.environ.pop(PARENT_ENV, None)
        if run_id:
            record_best(mlflow.MlflowClient(), run_id, Path(config.hydra.sweep.dir))
            mlflow.MlflowClient().set_terminated(run_id)


def record_best(client: mlflow.MlflowClient, parent_id: str, sweep_dir: Path) -> None:
    """Log the best finished point on the parent: highest OBJECTIVE, the first job among equals
    (as Optuna picks its best trial)."""
    parent = client.get_run(parent_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_id}' and attributes.status = 'FINISHED'",
        max_results=10_000,
    )
    scored = [c for c in children if OBJECTIVE in c.data.metrics]
    if scored:
        best = max(
            scored,
            key=lambda c: (c.data.metrics[OBJECTIVE], -int(c.data.tags.get("sweep.job", 0))),
        )
        point = [o.split("=", 1) for o in best.data.tags.get("sweep.point", "").split() if "=" in o]
        now = int(time.time() * 1000)
        client.log_batch(
            parent_id,
            metrics=[
                Metric(f"best_{name}", best.data.metrics[name], now, 0)
                for name in (OBJECTIVE, "test_acc")
                if name in best.data.metrics
            ],
            params=[Param(f"best.{key}", value) for key, value in point],
            tags=[RunTag("best.run_id", best.info.run_id)],
        )
    if (sweep_dir / RESULTS).is_file():
        client.log_artifact(parent_id, str(sweep_dir / RESULTS))


def end_if_open(run_id: str) -> None:
    """At exit: a parent whose sweep failed (a job raised, a submission was refused) is marked
    FAILED rather than left RUNNING."""
    if os.environ.get(PARENT_ENV) == run_id:
        with contextlib.suppress(Exception):
            mlflow.MlflowClient().set_terminated(run_id, "FAILED")
