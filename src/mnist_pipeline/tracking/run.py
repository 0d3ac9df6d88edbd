"""The MLflow run of one pipeline execution: opened by train, continued by evaluate.

The run id travels between the two stages in `models/mlflow_run.json` (`run_file.py`), an
output of train. Only the resolved project config is logged as params, never
the process environment.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from mnist_pipeline.config.params import flatten, to_yaml
from mnist_pipeline.tracking import run_file
from mnist_pipeline.tracking.lineage import log_dataset
from mnist_pipeline.tracking.run_file import RunRecord
from mnist_pipeline.tracking.store import connect, tracking_uri
from mnist_pipeline.tracking.sweep import PARENT_ENV
from mnist_pipeline.tracking.tags import run_tags
from mnist_pipeline.utils.errors import interruption
from mnist_pipeline.utils.paths import Outputs
from mnist_pipeline.utils.redact import redact


@contextmanager
def training_run(
    cfg: DictConfig,
    data_dir: Path,
    out: Outputs,
    resume_id: str | None = None,
    tracks: bool = True,
) -> Iterator[str | None]:
    """Open a run holding the config (params, `config.yaml`, tags, dataset); once the block has
    saved the model, record which run and store it belongs to (`run_file.py`).

    With `resume_id`, reopen that run instead (an interrupted training going on), renamed after
    the current DVC experiment: DVC names the rerun afresh. An interrupted block (Ctrl-C, SIGTERM)
    leaves the run KILLED, a failed one FAILED. Under a Hydra sweep the run nests under the
    sweep's parent run. With `tracks` false (DDP's processes but global rank 0, on any node)
    nothing is tracked and the block gets None.
    """
    if not tracks:
        yield None
        return
    connect(cfg.tracking)
    experiment = os.environ.get("DVC_EXP_NAME")  # this DVC experiment's name, if any
    if resume_id:  # renamed: the killed training may have been another experiment's
        opened = mlflow.start_run(run_id=resume_id, run_name=experiment)
    else:
        opened = mlflow.start_run(
            run_name=experiment,
            parent_run_id=os.environ.get(PARENT_ENV),
            tags=run_tags(cfg),
        )
    status = "FAILED"
    try:
        if resume_id:
            mlflow.set_tags(
                {"resumed": "true"} | ({"dvc.experiment": experiment} if experiment else {})
            )
        else:
            params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
            mlflow.log_params({key: redact(str(value)) for key, value in params.items()})
            mlflow.log_text(redact(to_yaml(cfg)), "config.yaml")
            log_dataset(data_dir)
        yield opened.info.run_id
        info, uri = opened.info, tracking_uri(cfg.tracking.uri)
        run_file.write(out, info.run_id, cfg.tracking.experiment, info.experiment_id, uri)
        status = "FINISHED"
    except BaseException as e:
        if interruption(e):  # Ctrl-C or SIGTERM, as MLflow marks an interrupted run
            status = "KILLED"
        raise
    finally:
        with contextlib.suppress(Exception):  # a store gone away must not hide the real error
            mlflow.end_run(status)


@contextmanager
def evaluation_run(cfg: DictConfig, record: RunRecord) -> Iterator[None]:
    """Reopen the run that train recorded, so evaluate's results land beside train's."""
    connect(cfg.tracking)
    with mlflow.start_run(run_id=record.run_id):
        yield


def log_test_results(headline: dict[str, float], per_class: dict) -> None:
    """Test metrics, overall (`test_acc`) and per class (`test_f1_3`), in one call."""
    metrics = {f"test_{name}": value for name, value in headline.items()}
    for cls, scores in per_class.items():
        metrics |= {f"test_{name}_{cls}": scores[name] for name in ("precision", "recall", "f1")}
    mlflow.log_metrics(metrics)


def log_artifacts(folder: Path, names: list[str]) -> None:
    for name in names:
        mlflow.log_artifact(str(folder / name))
