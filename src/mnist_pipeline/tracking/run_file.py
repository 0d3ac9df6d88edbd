"""`models/mlflow_run.json`: which MLflow run, in which store, a trained model belongs to.

Train writes it; evaluate reads it before logging anything, and refuses a model that is not the
one that run logged, or a store that is not the one train used (another `MLFLOW_TRACKING_URI`),
with one paragraph saying what to do. The file is git-tracked, so it names the store without
credentials or local paths, and the model by its hash: a run id inside `model.pt` would make
identical weights differ in bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mnist_pipeline.tracking.store import (
    DEFAULT_STORE,
    UI,
    TrackingError,
    project_root,
    tracking_uri,
)
from mnist_pipeline.utils.atomic import write_json
from mnist_pipeline.utils.paths import Outputs
from mnist_pipeline.utils.redact import redact, without_credentials


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    experiment: str
    experiment_id: str
    store: str  # `store_label` of the tracking URI
    model_sha256: str

    def link(self, uri: str) -> str | None:
        """The run's page in the MLflow UI: on the tracking server, or on `make ui` for the
        project's own `mlflow.db`. None for any other store (another SQLite file, a database, a
        folder): no UI is known to serve it, and `make ui`'s would not hold the run."""
        if uri.startswith(("http://", "https://")):
            base = without_credentials(uri).rstrip("/")
        elif store_label(uri) == f"sqlite:///{DEFAULT_STORE}":
            base = UI
        else:
            return None
        return f"{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"


def store_label(uri: str) -> str:
    """The URI as recorded: credentials hidden, this repository's own store as `mlflow.db`."""
    local = f"sqlite:///{project_root()}/"
    return redact(uri.replace(local, "sqlite:///", 1) if uri.startswith(local) else uri)


def model_digest(model: Path) -> str:
    return hashlib.sha256(model.read_bytes()).hexdigest()


def write(out: Outputs, run_id: str, experiment: str, experiment_id: str, uri: str) -> None:
    record = RunRecord(run_id, experiment, experiment_id, store_label(uri), model_digest(out.model))
    write_json(out.run_file, asdict(record))


def read_checked(out: Outputs, configured_uri: str | None) -> RunRecord:
    """The record, if `out.model` is the model it names and this process tracks to its store."""
    try:
        record = RunRecord(**json.loads(out.run_file.read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise TrackingError(
            f"{out.run_file} is missing or not written by this project's train stage ({e}): "
            "run `dvc repro train` (or `dvc repro -f train`) to train and record the run again."
        ) from e
    here = store_label(tracking_uri(configured_uri))
    if record.store != here:
        raise TrackingError(
            f"{out.model} was trained in MLflow run {record.run_id} of the store {record.store}, "
            f"but this evaluate would log to {here}. Set MLFLOW_TRACKING_URI (or tracking.uri) "
            "back to the store train used, or retrain into this one with `dvc repro -f train`. "
            "Nothing was evaluated."
        )
    try:
        digest = model_digest(out.model)
    except OSError as e:  # missing (never pulled), a directory, unreadable
        raise TrackingError(
            f"{out.model} cannot be read ({e.strerror or e}), though {out.run_file} records "
            f"MLflow run {record.run_id} for it. Run `dvc repro train` to train it again, or "
            "`dvc pull` to fetch it from the DVC remote. Nothing was evaluated."
        ) from e
    if digest != record.model_sha256:
        raise TrackingError(
            f"{out.model} is not the model MLflow run {record.run_id} logged (its sha256 differs "
            f"from the one in {out.run_file}): it was replaced after training. Run `dvc repro "
            "train` to train and record it again. Nothing was evaluated."
        )
    return record
