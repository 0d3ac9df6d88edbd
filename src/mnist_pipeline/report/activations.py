"""What a network sees: its first filters and each convolution's feature maps, before and after
pooling, read with forward hooks, so any variant (LeNet-5, the CNNs, an MLP with none) works
without knowing its layout.

Shared by `evaluate`'s `features.png` and the demo page, so both show the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from mnist_pipeline.model.networks import POOLS


@dataclass
class Stage:
    """One convolution: its output maps ("convolved", (N, C, H, W)) and, if a pooling layer
    follows before the next convolution, the pooled maps ((N, C, h, w)); raw values, no scaling."""

    convolved: Tensor
    pooled: Tensor | None = None


@dataclass
class Seen:
    """The logits of a batch, the first convolution's filters ((C, k, k), or None for a network
    without convolutions) and every convolution stage, in forward order."""

    logits: Tensor
    filters: Tensor | None
    stages: list[Stage] = field(default_factory=list)


def look(network: nn.Module, images: Tensor) -> Seen:
    """Run `network` on `images` in eval mode, keeping every convolution's and pooling layer's
    output. A pooling layer belongs to the convolution before it; pooling with no convolution
    before it (none in this project's networks) is ignored."""
    stages: list[Stage] = []

    def convolved(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        stages.append(Stage(output.detach()))

    def pooled(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if stages and stages[-1].pooled is None:
            stages[-1].pooled = output.detach()

    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    hooks = [m.register_forward_hook(convolved) for m in convs]
    pools = tuple(POOLS.values())
    hooks += [m.register_forward_hook(pooled) for m in network.modules() if isinstance(m, pools)]
    was_training = network.training
    try:
        with torch.inference_mode():
            logits = network.eval()(images)
    finally:
        network.train(was_training)
        for hook in hooks:
            hook.remove()
    filters = convs[0].weight.detach()[:, 0] if convs else None  # input is one grey channel
    return Seen(logits, filters, stages)


def scaled(maps: Tensor | np.ndarray) -> np.ndarray:
    """Maps (..., H, W) as uint8 0-255, each stretched over its own range (a flat map is 0).

    Each map alone, as the eye compares shapes, not magnitudes: a filter's weights and a deep
    map's activations differ in scale by orders of magnitude.
    """
    values = torch.as_tensor(maps, dtype=torch.float32)
    low = values.amin(dim=(-2, -1), keepdim=True)
    span = values.amax(dim=(-2, -1), keepdim=True) - low
    out = (values - low) / torch.where(span > 0, span, torch.ones_like(span))
    return (out * 255).round().to(torch.uint8).numpy()
