"""An MLflow SQLite store with its tables made, to copy: MLflow's migrations take seconds, a copy
none, so each test gets a fresh store cheaply."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import pytest


def fresh_store(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> Path:
    """`folder/mlflow.db`: MLflow's tables and its Default experiment, no other experiment."""
    tables = tmp_path_factory.getbasetemp() / "mlflow-tables.db"
    if not tables.exists():  # once a session
        making = tables.with_suffix(".making")
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{making}").search_experiments()
        os.replace(making, tables)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(tables, folder / "mlflow.db")
    return folder / "mlflow.db"
