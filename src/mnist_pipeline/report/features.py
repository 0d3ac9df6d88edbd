"""`reports/features.png`: what the network sees, for a few test digits.

The first convolution's learned filters, then one row per layer (the input, each convolution's
feature maps before and after pooling) with the chosen digits side by side, every map stretched
over its own range. An MLP has no filters or maps: its figure shows the digits and predictions.
Drawn as one image per row, a few axes in all: it runs in every `evaluate`, so it must be quick.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnist_pipeline.model.networks import Standardise
from mnist_pipeline.report.activations import look, scaled
from mnist_pipeline.report.figures import _pyplot, _save, tile

GAP, GAP_RGB = 1, (91, 125, 177)  # between the maps of one image
SEP, SEP_RGB = 6, (255, 255, 255)  # between images


def pick(labels: np.ndarray, count: int) -> list[int]:
    """The first test digit of each of `count` different classes, in test-set order."""
    chosen: dict[int, int] = {}
    for i, label in enumerate(labels.tolist()):
        chosen.setdefault(label, i)
        if len(chosen) == count:
            break
    return list(chosen.values())


def grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns for `count` maps: few empty places, about 2.5 times as wide as high."""

    def cost(rows: int) -> float:
        cols = math.ceil(count / rows)
        return rows * cols - count + abs(math.log(cols / rows / 2.5))

    rows = min(range(1, count + 1), key=cost)
    return rows, math.ceil(count / rows)


def rows_of(
    network: nn.Module, images: np.ndarray
) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """The name and RGB image of each row, and each digit's softmax."""
    seen = look(network, torch.from_numpy(images.astype(np.float32)))
    side_by_side = (1, len(images))
    names = ["input"]
    rows = [tile(images.astype(np.uint8), side_by_side, SEP, SEP_RGB)]
    for n, stage in enumerate(seen.stages, start=1):
        for kind, maps in (("convolved", stage.convolved), ("pooled", stage.pooled)):
            if maps is not None:
                c, h, w = maps.shape[1:]
                mosaics = [tile(scaled(m), grid_shape(c), GAP, GAP_RGB) for m in maps]
                rows.append(tile(np.stack(mosaics), side_by_side, SEP, SEP_RGB))
                names.append(f"{kind} {n}\n{c}x{h}x{w}")
    if seen.filters is not None:
        c, k, _ = seen.filters.shape
        shape = (math.ceil(c / 16), min(c, 16))
        rows.insert(0, tile(scaled(seen.filters), shape, GAP, GAP_RGB))
        names.insert(0, f"filters\n{c}x{k}x{k}")
    return names, rows, torch.softmax(seen.logits, dim=1).numpy()


def draw(
    model: nn.Module,
    norm: dict[str, float],
    images: np.ndarray,
    labels: np.ndarray,
    path: Path,
    count: int = 3,
) -> None:
    """Draw the figure for the first test digits of `count` classes (raw 0-255 `images`)."""
    chosen = pick(labels, count)
    network = nn.Sequential(Standardise(norm["mean"], norm["std"]), model)
    names, rows, probs = rows_of(network, images[chosen])
    plt = _pyplot()
    heights = [row.shape[0] / row.shape[1] for row in rows]
    width = 8.0  # inches; the images take about 85% of it, their labels the rest
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(width, 0.85 * width * sum(heights) + 0.2 * len(rows) + 0.6),
        dpi=100,
        gridspec_kw={"height_ratios": heights}, squeeze=False,
    )  # fmt: skip
    for ax, name, row in zip(axes[:, 0], names, rows, strict=True):
        ax.imshow(row, interpolation="nearest")
        ax.set(xticks=[], yticks=[])
        ax.set_ylabel(name, fontsize=8)
        if name == "input":
            step = row.shape[1] / len(chosen)
            ax.set_xticks(
                [step * (c + 0.5) for c in range(len(chosen))],
                [
                    f"{labels[i]} → {p.argmax()} ({p.max():.0%})"
                    for i, p in zip(chosen, probs, strict=True)
                ],
                fontsize=9,
            )
            ax.tick_params(length=0, labeltop=True, labelbottom=False)
    seen = "each map scaled to its range" if len(rows) > 1 else "no convolution in this network"
    fig.suptitle(f"what the network sees: true → predicted; {seen}", fontsize=10)
    _save(fig, path)
