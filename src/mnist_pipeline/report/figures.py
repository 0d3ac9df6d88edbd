"""The figures a person looks at, as PNG files (for MLflow; DVC renders its own from the CSVs).

matplotlib is imported inside each function, with the headless Agg backend, so importing this
module costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_pipeline.utils.atomic import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, tight: bool = True) -> None:
    if tight:  # for subplots with labels and ticks; a figure that places its own axes skips it
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    _pyplot().close(fig)


def confusion(cm: list[list[int]], path: Path, title: str) -> None:
    """A labelled heat map of the confusion matrix, counts written in every cell."""
    import matplotlib.colors

    plt = _pyplot()
    n = len(cm)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=100)
    image = ax.imshow(cm, cmap="Blues", norm=matplotlib.colors.LogNorm(vmin=1))
    fig.colorbar(image, ax=ax, label="examples (log scale)")
    top = max(max(row) for row in cm)
    for i in range(n):
        for j in range(n):
            if cm[i][j]:
                color = "white" if cm[i][j] > top**0.75 else "black"  # dark cells
                ax.text(j, i, cm[i][j], ha="center", va="center", fontsize=7, color=color)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    _save(fig, path)


def training_curves(history: Sequence[dict[str, float]], path: Path) -> None:
    """Loss (train and validation) and validation accuracy per epoch."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for name in ("train_loss", "val_loss"):
        loss.plot(epochs, [row.get(name, np.nan) for row in history], marker="o", label=name)
    loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    loss.legend()
    acc.plot(epochs, [row.get("val_acc", np.nan) for row in history], marker="o", color="C2")
    acc.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
    _save(fig, path)


def mistakes(
    images: np.ndarray,
    labels: Sequence[int],
    predicted: Sequence[int],
    confidence: Sequence[float],
    path: Path,
    count: int = 24,
) -> None:
    """The test digits the model got wrong with the most confidence, labelled true → predicted.
    One image with its labels written on it: one matplotlib axes per digit made this the slowest
    part of `evaluate`."""
    plt = _pyplot()
    wrong = [i for i, (y, p) in enumerate(zip(labels, predicted, strict=True)) if y != p]
    worst = sorted(wrong, key=lambda i: -confidence[i])[:count]
    cols = 8
    rows = max(1, -(-len(worst) // cols))
    side, label, gap = images.shape[-1], 10, 3  # pixels: a digit, the label above it, between
    cells = np.full((max(1, len(worst)), label + side, side), 255, dtype=np.uint8)
    cells[: len(worst), label:] = 255 - images[worst]  # dark ink on white
    fig = plt.figure(figsize=(cols * 1.2, rows * 1.45 + 0.3), dpi=100)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.99 - 0.3 / (rows * 1.45 + 0.3)))
    ax.imshow(tile(cells, (rows, cols), gap, (255, 255, 255)), interpolation="nearest")
    ax.set_axis_off()
    for k, i in enumerate(worst):
        r, c = divmod(k, cols)
        ax.text(c * (side + gap) + side / 2, r * (label + side + gap) + label / 2,
                f"{labels[i]}→{predicted[i]} {confidence[i]:.0%}", ha="center", va="center",
                fontsize=8)  # fmt: skip
    fig.suptitle("most confident mistakes (true→predicted, confidence)", fontsize=9)
    _save(fig, path, tight=False)


def tile(pictures: np.ndarray, shape: tuple[int, int], gap: int, colour: tuple) -> np.ndarray:
    """Pictures (C, H, W) or (C, H, W, 3) as one RGB image, `shape` (rows, columns) of them."""
    rgb = pictures if pictures.ndim == 4 else np.repeat(pictures[..., None], 3, axis=-1)
    h, w = rgb.shape[1:3]
    rows, cols = shape
    out = np.empty((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), dtype=np.uint8)
    out[:] = colour
    for i, picture in enumerate(rgb):
        r, q = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, q * (w + gap) : q * (w + gap) + w] = picture
    return out
