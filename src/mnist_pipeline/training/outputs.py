"""What a finished training leaves: the model file and the curves on disk, then both in MLflow.

Disk first, so a tracking store gone away loses nothing: the error then says what MLflow missed.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn

from mnist_pipeline.data import splits
from mnist_pipeline.model import model_file
from mnist_pipeline.report import figures
from mnist_pipeline.tracking import registry
from mnist_pipeline.tracking.epochs import EpochMetrics
from mnist_pipeline.tracking.run import log_artifacts
from mnist_pipeline.tracking.store import TrackingError, tracking_uri
from mnist_pipeline.training import doubt
from mnist_pipeline.utils.atomic import write_text
from mnist_pipeline.utils.paths import Outputs
from mnist_pipeline.utils.redact import redact


def save(cfg: DictConfig, out: Outputs, data_dir: Path, model: nn.Module, history: list) -> None:
    """The weights with what rebuilds them and the "not sure" rule chosen for them; the curves
    as `training.csv` (for `dvc plots`) and `training.png` (for MLflow)."""
    stats = splits.load_stats(data_dir)
    rule = doubt.choose(model, stats, data_dir, cfg.seed)
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    model_file.save(out.model, model, spec, stats, rule)  # type: ignore[arg-type]
    write_csv(out.reports / "training.csv", history)
    figures.training_curves(history, out.reports / "training.png")


def publish(cfg: DictConfig, out: Outputs, data_dir: Path, epochs: EpochMetrics) -> None:
    """Log the curves and register the saved model file; a store that refuses is one clear
    error."""
    example = splits.load(data_dir, "val").images[:5].astype("float32")
    epochs.log_missed()
    try:
        log_artifacts(out.reports, ["training.png"])
        registry.log_model(out.model, example)
    except Exception as e:
        raise TrackingError(
            f"training finished and {out.model} is saved, but MLflow at "
            f"{redact(tracking_uri(cfg.tracking.uri))} took neither the training curves nor "
            f"the model ({type(e).__name__}: {redact(str(e).splitlines()[0][:200])})"
        ) from e
    if epochs.unlogged:
        raise TrackingError(
            f"training finished and {out.model} is saved, but the metrics of epochs "
            f"{epochs.unlogged} did not reach MLflow (they are in {out.reports}/training.csv)"
        )


def write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [",".join(columns)] + [",".join(f"{row.get(c, '')}" for c in columns) for row in rows]
    write_text(path, "\n".join(lines) + "\n")
