"""The one way the project opens a model to answer with: `predict`, the demo and the served MLflow
model all get their network here, so they give the same digit for the same file.

A model is a model file written by train (`models/model.pt`), an MLflow model (a folder holding
an `MLmodel` file, or a URI such as `models:/mnist-classifier@champion` or `runs:/<id>/model`),
or, when none is given, the registry's champion, else `models/model.pt`. From an MLflow model
only its weights file is fetched, and read as any model file is (`model_file.load_served`: no
pickle); the code stored with the model is neither downloaded nor run.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from mnist_pipeline.model import model_file
from mnist_pipeline.serving.images import one_line

log = logging.getLogger(__name__)
CHAMPION = "models:/mnist-classifier@champion"
FALLBACK = Path("models/model.pt")


class ModelError(RuntimeError):
    """No model to answer with; the message names what was tried and what to do."""


@dataclass(frozen=True)
class Loaded:
    network: nn.Module  # raw pixels (N, 28, 28), 0-255, in; logits out
    source: str  # where it came from, for messages and the page


def load(given: str | Path | None = None) -> Loaded:
    """The model given; else the champion, else `models/model.pt` (saying so)."""
    if given is not None:
        return Loaded(network(str(given)), str(given))
    try:
        return Loaded(network(CHAMPION, must_exist=True), CHAMPION)
    except ModelError as e:
        log.warning("%s; using %s instead", e, FALLBACK)
    try:
        return Loaded(network(str(FALLBACK)), str(FALLBACK))
    except model_file.CheckpointError as e:
        raise ModelError(
            f"No model yet: no {CHAMPION} in the registry, and {e}. Train one with `make repro`"
        ) from None


def network(given: str, must_exist: bool = False) -> nn.Module:
    """The network of a model file, or of the MLflow model at `given`: `ModelError` if there is
    none, `CheckpointError` if its weights file is not one train writes (never a silent
    fallback to another model)."""
    uri = "://" in given or given.startswith(("models:/", "runs:/"))
    if uri or Path(given, "MLmodel").is_file():
        given = str(mlflow_weights(given, must_exist))
    return model_file.load_served(Path(given))


def mlflow_weights(uri: str, must_exist: bool) -> Path:
    """The weights file of the MLflow model at `uri` (a folder or a URI), from the project's
    tracking store: the registry's champion only if that store exists (opening a missing SQLite
    store would create an empty one)."""
    import mlflow.artifacts  # a slow import: only when an MLflow model is used
    from mlflow.models import Model

    from mnist_pipeline.tracking.store import sqlite_path, tracking_uri

    store = tracking_uri()
    if must_exist and store.startswith("sqlite:///") and not sqlite_path(store).is_file():
        raise ModelError(f"no tracking store {sqlite_path(store)}")
    mlflow.set_tracking_uri(store)
    try:
        if Path(uri, "MLmodel").is_file():
            folder = Path(uri)
        else:  # only the two files needed, not the model's stored code
            folder = Path(tempfile.mkdtemp(prefix="mnist-model-"))
            mlflow.artifacts.download_artifacts(f"{uri.rstrip('/')}/MLmodel", dst_path=str(folder))
        flavor = Model.load(folder / "MLmodel").flavors["python_function"]
        weights = flavor["artifacts"]["weights"]["path"]
        if not (folder / weights).is_file():
            mlflow.artifacts.download_artifacts(
                f"{uri.rstrip('/')}/{weights}", dst_path=str(folder)
            )
    except Exception as e:  # MLflow's errors: no such model, alias, run or store; not ours
        raise ModelError(f"cannot load {uri} ({type(e).__name__}: {one_line(e)})") from None
    return folder / weights
