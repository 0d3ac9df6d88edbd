"""Test-set metrics from logits: loss, accuracy, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnist_pipeline.model.networks import NUM_CLASSES

HEADLINE = ("acc", "loss", "macro_f1")  # what reports/metrics.json and `dvc exp show` carry


@torch.inference_mode()
def predict(model: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    """Logits for all images, in batches."""
    model.eval()
    return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def calibration_error(probabilities: Tensor, labels: Tensor, bins: int = 15) -> float:
    """Expected calibration error (Guo et al. 2017): over equal-width bins of the top
    probability, the gap between it and the accuracy, weighted by each bin's share."""
    confidence, predicted = probabilities.max(dim=1)
    right = (predicted == labels).double()
    which = (confidence * bins).ceil().clamp(1, bins).long() - 1
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            share = inside.double().mean()
            gap += float(share * (confidence[inside].mean() - right[inside].mean()).abs())
    return gap


def confusion_matrix(labels: Tensor, predicted: Tensor, num_classes: int = NUM_CLASSES) -> Tensor:
    """Counts[i, j] of examples of true class i predicted as class j."""
    flat = labels * num_classes + predicted
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def report(logits: Tensor, labels: Tensor) -> dict[str, Any]:
    """Everything evaluate publishes, as plain Python numbers."""
    predicted = logits.argmax(1)
    cm = confusion_matrix(labels, predicted).double()
    tp = cm.diag()
    precision = tp / cm.sum(0).clamp(min=1)
    recall = tp / cm.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    return {
        "acc": (predicted == labels).double().mean().item(),
        "loss": F.cross_entropy(logits, labels).item(),
        "macro_f1": f1.mean().item(),
        "per_class": {
            str(c): {
                "precision": precision[c].item(),
                "recall": recall[c].item(),
                "f1": f1[c].item(),
                "support": int(cm[c].sum().item()),
            }
            for c in range(len(cm))
        },
        "confusion": cm.long().tolist(),
        "predictions": predicted.tolist(),
        "confidence": logits.softmax(1).max(1).values.tolist(),
    }
