"""DVC stage `evaluate`: test metrics, confusion matrix and plots, logged to train's MLflow run."""

from __future__ import annotations

from pathlib import Path

import mlflow
import torch

from mnist_pipeline import checkpoint, dataset, evaluation, tracking
from mnist_pipeline.atomic import write_json, write_text
from mnist_pipeline.cli import run_stage
from mnist_pipeline.config import load_params
from mnist_pipeline.models import complexity
from mnist_pipeline.tensors import normalise

PROCESSED_DIR = Path("data/processed")
MODEL_FILE = Path("models/model.pt")
REPORTS = Path("reports")


def main() -> None:
    cfg = load_params()
    model, norm = checkpoint.load(MODEL_FILE)
    test = dataset.load(PROCESSED_DIR, "test")
    images = normalise(torch.from_numpy(test.images), norm["mean"], norm["std"])
    logits = evaluation.predict(model, images, cfg.data.eval_batch_size)
    result = evaluation.report(logits, torch.from_numpy(test.labels))

    headline = {k: result[k] for k in evaluation.HEADLINE}
    size = complexity(model)  # parameters and multiply-accumulates per image
    write_json(REPORTS / "metrics.json", {"test": headline, "model": size})
    write_json(REPORTS / "per_class.json", result["per_class"])
    pairs = zip(test.labels, result["predictions"], strict=True)
    write_text(
        REPORTS / "confusion.csv", "actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in pairs)
    )
    evaluation.plot_confusion(
        result["confusion"], REPORTS / "confusion.png", f"test accuracy {result['acc']:.2%}"
    )

    with tracking.resume_run(cfg):  # the model itself was logged by train
        tracking.log_test_results(headline, result["per_class"], REPORTS)
        mlflow.log_metrics({f"model_{name}": value for name, value in size.items()})


if __name__ == "__main__":
    run_stage(main)
