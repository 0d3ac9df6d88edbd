"""The MLflow run of one pipeline execution: opened by train, continued by evaluate.

The run id travels between the two stages in a small JSON file (`models/mlflow_run.json` for the
DVC pipeline), an output of train. Only the resolved project config is logged as params, never
the process environment.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from mnist_pipeline.atomic import write_json
from mnist_pipeline.config import flatten, to_yaml
from mnist_pipeline.tracking.lineage import log_dataset
from mnist_pipeline.tracking.store import UI, connect
from mnist_pipeline.tracking.sweep import PARENT_ENV
from mnist_pipeline.tracking.tags import run_tags


@contextmanager
def training_run(
    cfg: DictConfig, data_dir: Path, run_file: Path, resume_id: str | None = None
) -> Iterator[str | None]:
    """Open a run holding the config (params, `config.yaml`, tags, dataset); record its id.

    With `resume_id`, reopen that run instead (an interrupted training going on). Under a Hydra
    sweep the run nests under the sweep's parent run. DDP's extra processes (Lightning starts
    them with RANK or LOCAL_RANK set) track nothing.
    """
    if os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) != "0":
        yield None
        return
    connect(cfg.tracking)
    if resume_id:
        opened = mlflow.start_run(run_id=resume_id)
    else:
        opened = mlflow.start_run(
            run_name=os.environ.get("DVC_EXP_NAME"),
            parent_run_id=os.environ.get(PARENT_ENV),
            tags=run_tags(cfg),
        )
    status = "FAILED"
    try:
        if resume_id:
            mlflow.set_tag("resumed", "true")
        else:
            params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
            mlflow.log_params({key: str(value) for key, value in params.items()})
            mlflow.log_text(to_yaml(cfg), "config.yaml")
            log_dataset(data_dir)
        yield opened.info.run_id
        write_json(run_file, {"run_id": opened.info.run_id, "experiment": cfg.tracking.experiment})
        status = "FINISHED"
    finally:
        with contextlib.suppress(Exception):  # a store gone away must not hide the real error
            mlflow.end_run(status)


@contextmanager
def evaluation_run(cfg: DictConfig, run_file: Path) -> Iterator[str]:
    """Reopen the run that train recorded, so evaluate's results land beside train's."""
    run_id = json.loads(run_file.read_text())["run_id"]
    connect(cfg.tracking)
    with mlflow.start_run(run_id=run_id):
        yield run_id


def log_test_results(headline: dict[str, float], per_class: dict) -> None:
    """Test metrics, overall (`test_acc`) and per class (`test_f1_3`), in one call."""
    metrics = {f"test_{name}": value for name, value in headline.items()}
    for cls, scores in per_class.items():
        metrics |= {f"test_{name}_{cls}": scores[name] for name in ("precision", "recall", "f1")}
    mlflow.log_metrics(metrics)


def log_artifacts(folder: Path, names: list[str]) -> None:
    for name in names:
        mlflow.log_artifact(str(folder / name))


def run_link(run_id: str) -> dict[str, str]:
    """The run's id and its page in the MLflow UI, for reports/metrics.json."""
    run = mlflow.get_run(run_id)
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith("http") else UI
    return {"run_id": run_id, "url": f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"}
