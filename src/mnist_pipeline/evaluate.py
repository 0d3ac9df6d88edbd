"""DVC stage `evaluate`: test metrics, confusion matrix and plots, logged into train's MLflow run."""

from __future__ import annotations

from pathlib import Path

from mnist_pipeline.cli import run_stage
from mnist_pipeline.config import load_params

PROCESSED_DIR = Path("data/processed")
MODEL_FILE = Path("models/model.pt")
REPORTS = Path("reports")


def main() -> None:
    import torch

    from mnist_pipeline import checkpoint, dataset, evaluation, tracking
    from mnist_pipeline.atomic import write_json, write_text
    from mnist_pipeline.tensors import normalise

    cfg = load_params()
    model, norm = checkpoint.load(MODEL_FILE)
    test = dataset.load(PROCESSED_DIR, "test")
    images = normalise(torch.from_numpy(test.images), norm["mean"], norm["std"])
    labels = torch.from_numpy(test.labels)
    result = evaluation.report(evaluation.predict(model, images, cfg.data.eval_batch_size), labels)

    write_json(
        REPORTS / "metrics.json",
        {"test": {k: result[k] for k in ("acc", "loss", "macro_f1")}},
    )
    write_json(REPORTS / "per_class.json", result["per_class"])
    predicted = result["predictions"]
    write_text(
        REPORTS / "confusion.csv",
        "actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in zip(test.labels, predicted)),
    )
    evaluation.plot_confusion(
        result["confusion"], REPORTS / "confusion.png", f"test accuracy {result['acc']:.2%}"
    )

    with tracking.resume_run(cfg):
        tracking.log_test_results(result, REPORTS)
        tracking.log_model(model, norm, test.images[:5].astype("float32"))


if __name__ == "__main__":
    run_stage(main)
