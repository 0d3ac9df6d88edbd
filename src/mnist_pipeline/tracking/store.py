"""The MLflow store: which one (`tracking.uri`, $MLFLOW_TRACKING_URI or `mlflow.db`), and a
connection that fails fast, naming the URI, when the store is not usable."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import mlflow
from omegaconf import DictConfig

from mnist_pipeline.redact import redact

DEFAULT_STORE = "mlflow.db"
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
UI = "http://127.0.0.1:5000"  # `make ui`, for links to runs in the local store


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or refuses a write; the message names the URI."""


def project_root() -> Path:
    """The repository whose `mlflow.db` is the default store.

    DVC sets DVC_ROOT for every stage; for queued experiments, which run in a temporary copy
    under .dvc/tmp/exps, it points at the original repository, so their runs land beside the rest.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd())


def tracking_uri(configured: str | None = None) -> str:
    """`tracking.uri` if set, else $MLFLOW_TRACKING_URI, else SQLite `mlflow.db` in the repo root.

    The default is spelled out because MLflow's own fallback switches to a `./mlruns` file
    store when one exists, which MLflow 3 then refuses.
    """
    return (
        configured
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{project_root() / DEFAULT_STORE}"
    )


def connect(tracking: DictConfig) -> None:
    """Point MLflow at the configured store and experiment, creating the experiment if needed.

    A server that does not answer fails here, within seconds, before any training: MLflow's own
    retries (7, with exponential backoff) would take minutes, so they are capped unless set.
    """
    uri = tracking_uri(tracking.uri)
    mlflow.set_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        for name, value in HTTP_LIMITS.items():
            os.environ.setdefault(name, value)
        try:
            mlflow.MlflowClient().search_experiments(max_results=1)
        except Exception as e:  # requests' and MLflow's errors alike: the server is not usable
            reason = redact(str(e).splitlines()[0][:200])
            raise TrackingError(
                f"the MLflow tracking server at {redact(uri)} is not answering "
                f"({type(e).__name__}: {reason}). Start it, or unset MLFLOW_TRACKING_URI to "
                "track into mlflow.db here. Nothing was trained."
            ) from e
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(tracking.experiment) is None:
        # Artifacts beside the database, wherever the first run happens to execute.
        artifacts = Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns"
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # a concurrent run made it
            mlflow.create_experiment(tracking.experiment, artifact_location=artifacts.as_uri())
    experiment = mlflow.set_experiment(tracking.experiment)
    # Model training, not GenAI: the kind the MLflow UI files the experiment under. Also set on
    # an experiment made before or elsewhere; a kind a user chose is kept. A label only: a store
    # that refuses it (no permission to edit the experiment) still gets the run.
    if KIND_TAG not in experiment.tags:
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            client = mlflow.MlflowClient()
            client.set_experiment_tag(experiment.experiment_id, KIND_TAG, MODEL_TRAINING)


KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
