"""Where the pipeline's files live, relative to the repository root (the stages' working dir)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
CHECKPOINTS = Path(".checkpoints/train")  # an interrupted training's state (not a DVC output)


@dataclass(frozen=True)
class Outputs:
    """A run's files: models/ and reports/ for the DVC pipeline, one folder for an ad-hoc run."""

    model: Path = Path("models/model.pt")
    run_file: Path = Path("models/mlflow_run.json")  # the MLflow run that train opened
    reports: Path = Path("reports")

    @classmethod
    def under(cls, folder: Path) -> Outputs:
        return cls(folder / "model.pt", folder / "mlflow_run.json", folder / "reports")


PIPELINE = Outputs()
