"""The one way the project opens a model to answer with: `predict`, the demo and the served MLflow
model all get their network here, so they give the same digit for the same file.

A model is a model file written by train (`models/model.pt`), an MLflow model (a folder holding
an `MLmodel` file, or a URI such as `models:/mnist-classifier@champion` or `runs:/<id>/model`),
or, when none is given, the registry's champion, else `models/model.pt`: those of the project
folder it is run in or under (the nearest one holding `dvc.yaml`), as git and DVC find theirs.
From an MLflow model only its weights file is fetched, and read as any model file is
(`model_file.load_served`: no pickle); the code stored with the model is neither downloaded nor
run.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnist_pipeline.model import model_file
from mnist_pipeline.serving.images import one_line

log = logging.getLogger(__name__)
CHAMPION = "models:/mnist-classifier@champion"
FALLBACK = Path("models/model.pt")
BATCH = 256


class ModelError(RuntimeError):
    """No model to answer with; the message names what was tried and what to do."""


@dataclass(frozen=True)
class Loaded:
    network: model_file.Served  # raw pixels (N, 28, 28), 0-255, in; logits out
    source: str  # where it came from, for messages and the page

    def judge(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities (N, 10) and "not sure" flags (N,) for raw pixels
        (N, 28, 28), a batch at a time: what every front end answers with."""
        images = torch.from_numpy(np.asarray(pixels, dtype=np.float32))
        judged = []
        with torch.inference_mode():
            for batch in images.split(BATCH):
                judged.append(self.network.doubt.judge(self.network(batch), batch))
        return tuple(torch.cat(part).numpy() for part in zip(*judged, strict=True))  # type: ignore[return-value]


def load(given: str | Path | None = None) -> Loaded:
    """The model given; else the project's champion, else its `models/model.pt` (saying so)."""
    if given is not None:
        return Loaded(network(str(given)), str(given))
    root = project()
    try:
        return Loaded(network(CHAMPION, must_exist=True, root=root), CHAMPION)
    except ModelError as e:
        champion = str(e)
    fallback = shown(root / FALLBACK)
    if not (root / FALLBACK).exists():
        raise ModelError(
            f"No model yet: {champion}, and no {fallback}. Train one with `make repro` in the "
            "project's folder, run this there, or point at a model: `--model PATH_OR_URI`, or "
            "MLFLOW_TRACKING_URI for another store"
        )
    log.warning("%s; using %s instead", champion, fallback)
    return Loaded(network(str(fallback)), str(fallback))


def project() -> Path:
    """The nearest folder, from the current one up, that holds `dvc.yaml`; else the current one."""
    here = Path.cwd()
    return next((p for p in (here, *here.resolve().parents) if (p / "dvc.yaml").is_file()), here)


def shown(path: Path) -> Path:
    """`path` relative to the current folder when it is under it, as the user would type it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path.resolve()


def network(
    given: str, must_exist: bool = False, root: Path | None = None, store: str | None = None
) -> model_file.Served:
    """The network of a model file, or of the MLflow model at `given`: `ModelError` if there is
    none, `CheckpointError` if its weights file is not one train writes (never a silent
    fallback to another model)."""
    uri = "://" in given or given.startswith(("models:/", "runs:/"))
    if uri or Path(given, "MLmodel").is_file():
        given = str(mlflow_weights(given, must_exist, root, store))
    return model_file.load_served(Path(given))


def mlflow_weights(
    uri: str, must_exist: bool, root: Path | None = None, store: str | None = None
) -> Path:
    """The weights file of the MLflow model at `uri` (a folder or a URI), from `store`, else
    MLFLOW_TRACKING_URI, else `root`'s `mlflow.db`: the registry's champion only if that store
    exists (opening a missing SQLite store would create an empty one). MLflow's own store is
    set back as it was: evaluate scores the champion while its run is open."""
    import mlflow.artifacts  # a slow import: only when an MLflow model is used
    from mlflow.models import Model

    from mnist_pipeline.tracking.store import DEFAULT_STORE, sqlite_path, tracking_uri
    from mnist_pipeline.utils.redact import redact

    local = f"sqlite:///{root.resolve() / DEFAULT_STORE}" if root else None
    store = store or os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri(local)
    if must_exist and store.startswith("sqlite:///") and not sqlite_path(store).is_file():
        raise ModelError(f"no {uri}: no tracking store {sqlite_path(store)}")
    previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
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
        raise ModelError(
            f"cannot load {uri} from {redact(store)} ({type(e).__name__}: {redact(one_line(e))})"
        ) from None
    finally:
        mlflow.set_tracking_uri(previous)
    return folder / weights
