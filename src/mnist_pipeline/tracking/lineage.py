"""Lineage: the commit a run's code came from and the data it trained on (its DVC content hash)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from mnist_pipeline.tracking.store import project_root


def git_state() -> dict[str, str]:
    """The commit the code came from, and whether the work tree differed from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout

    try:
        return {
            "git.commit": git("rev-parse", "HEAD").strip(),
            "git.dirty": str(bool(git("status", "--porcelain", "--untracked-files=no").strip())),
        }
    except (OSError, subprocess.CalledProcessError):
        return {}


def processed_data_digest(data_dir: Path) -> str:
    """The content hash DVC recorded for `data_dir` in dvc.lock (the data this run trained on)."""
    lock = Path("dvc.lock")
    if lock.is_file():
        for out in yaml.safe_load(lock.read_text())["stages"].get("preprocess", {}).get("outs", []):
            if Path(out["path"]) == data_dir:
                return out["md5"].removesuffix(".dir")
    return hashlib.md5((data_dir / "stats.json").read_bytes()).hexdigest()  # not run by DVC


def log_dataset(data_dir: Path) -> None:
    """Record the processed data as the run's dataset input, named by its content hash."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    # Relative to the repository: an absolute path would name this machine's folders.
    source = LocalArtifactDatasetSource(os.path.relpath(data_dir.resolve(), project_root()))
    dataset = MetaDataset(source, name="mnist-processed", digest=processed_data_digest(data_dir))
    try:
        mlflow.log_input(dataset, context="training")
    except MlflowException as e:
        # Parallel runs (a sweep on joblib workers) logging new data at once race in MLflow's
        # SQL store: it looks the dataset up, then inserts it, and the slower run's insert fails
        # on the unique key. Again, it finds the dataset the faster run inserted.
        if not any(word in str(e) for word in ("UNIQUE constraint", "duplicate key")):
            raise
        mlflow.log_input(dataset, context="training")
