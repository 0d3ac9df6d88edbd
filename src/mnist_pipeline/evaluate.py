"""DVC stage `evaluate`: test metrics, confusion matrix and plots, logged to train's MLflow run."""

from __future__ import annotations

from pathlib import Path

import mlflow
import torch
from omegaconf import DictConfig

from mnist_pipeline.atomic import write_json, write_text
from mnist_pipeline.cli import run_stage
from mnist_pipeline.config import load_params
from mnist_pipeline.data import splits
from mnist_pipeline.data.tensors import normalise
from mnist_pipeline.model import model_file
from mnist_pipeline.model.networks import complexity
from mnist_pipeline.paths import PIPELINE, PROCESSED_DIR, Outputs
from mnist_pipeline.report import figures, metrics
from mnist_pipeline.tracking import registry, run
from mnist_pipeline.tracking.store import TrackingError


def evaluate(cfg: DictConfig, out: Outputs = PIPELINE, data_dir: Path = PROCESSED_DIR) -> float:
    """Write the test reports, log them to the training run, promote the model if it is the best."""
    model, norm = model_file.load(out.model)
    test = splits.load(data_dir, "test")
    images = normalise(torch.from_numpy(test.images), norm["mean"], norm["std"])
    logits = metrics.predict(model, images, cfg.data.eval_batch_size)
    result = metrics.report(logits, torch.from_numpy(test.labels))
    headline = {k: result[k] for k in metrics.HEADLINE}
    size = complexity(model)  # parameters and multiply-accumulates per image
    reports = out.reports

    with run.evaluation_run(cfg, out.run_file) as run_id:
        write_json(
            reports / "metrics.json",
            {"test": headline, "model": size, "mlflow": run.run_link(run_id)},
        )
        write_json(reports / "per_class.json", result["per_class"])
        pairs = zip(test.labels, result["predictions"], strict=True)
        write_text(
            reports / "confusion.csv",
            "actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in pairs),
        )
        figures.confusion(
            result["confusion"], reports / "confusion.png", f"test accuracy {result['acc']:.2%}"
        )
        figures.mistakes(
            test.images,
            test.labels,
            result["predictions"],
            result["confidence"],
            reports / "mistakes.png",
        )
        run.log_test_results(headline, result["per_class"])
        run.log_artifacts(
            reports, ["metrics.json", "per_class.json", "confusion.png", "mistakes.png"]
        )
        mlflow.log_metrics({f"model_{name}": value for name, value in size.items()})
        registry.promote_if_better(run_id, result["acc"])
    return result["acc"]


def main() -> None:
    evaluate(load_params())


if __name__ == "__main__":
    run_stage(main, model_file.CheckpointError, TrackingError)
