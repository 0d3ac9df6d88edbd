"""The model the demo serves, and one answer: image bytes → the digit (or "not sure"), the
calibrated probabilities, and what the network saw on the way.

The model is opened as `predict` and the served model open it (`serving/loader.py`): the
registry's champion, else `models/model.pt`, or a model file given; the same network, so the same
logits. The demo hooks its layers to show what it sees.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnist_pipeline.model import model_file
from mnist_pipeline.report.activations import look, scaled
from mnist_pipeline.serving import loader
from mnist_pipeline.serving.images import load, stored

log = logging.getLogger(__name__)


def about(model: loader.Loaded) -> str:
    """Where the model came from and its shape, for the page and the log."""
    convs = [m.out_channels for m in model.network.modules() if isinstance(m, nn.Conv2d)]
    params = sum(p.numel() for p in model.network.parameters())
    shape = f"convolutions of {', '.join(map(str, convs))} maps" if convs else "no convolution"
    return f"{model.source}: {shape}, {params:,} parameters"


def open_model(given: Path | None) -> loader.Loaded:
    """The model file given, else the champion, else models/model.pt (serving/loader.py)."""
    try:
        return loader.load(given)
    except loader.ModelError as e:
        raise model_file.CheckpointError(f"{e}, then reload this page.") from None


def answer(served: loader.Loaded, data: bytes, name: str) -> dict:
    """What the page shows for one image file; `ImageError` (one line) when it holds no digit."""
    pixels = load(data, name)
    seen = look(served.network, torch.from_numpy(pixels)[None])
    calibrated, unsure = served.network.doubt.judge(seen.logits, torch.from_numpy(pixels)[None])
    probabilities = calibrated[0].tolist()
    layers = []
    for n, stage in enumerate(seen.stages, start=1):
        layers.append({"name": f"convolved {n}", "maps": encoded(scaled(stage.convolved[0]))})
        if stage.pooled is not None:
            layers.append({"name": f"pooled {n}", "maps": encoded(scaled(stage.pooled[0]))})
    return {
        "digit": int(np.argmax(probabilities)),
        "not_sure": bool(unsure[0]),
        "probabilities": [round(p, 6) for p in probabilities],
        "input": encoded(stored(pixels)[None]),
        "filters": None if seen.filters is None else encoded(scaled(seen.filters)),
        "layers": layers,
    }


def encoded(maps: np.ndarray) -> dict:
    """uint8 maps (C, H, W) as the page reads them: the shape, and the bytes in base64."""
    return {"shape": list(maps.shape), "data": base64.b64encode(maps.tobytes()).decode()}
