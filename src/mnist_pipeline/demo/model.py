"""The model the demo serves, and one answer: image bytes → the digit, the softmax, and what the
network saw on the way.

The model is the one `predict` uses: the registry's champion, else `models/model.pt`, or a model
file given. The demo needs the network itself (to hook its layers), so it reads the champion's
weights file from the registry and loads it the safe way (`model_file.load_served`), the same
file and code `mlflow.pyfunc` would run: the same logits as `predict`.
"""

from __future__ import annotations

import base64
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnist_pipeline.images import load
from mnist_pipeline.model import model_file
from mnist_pipeline.predict import CHAMPION, FALLBACK
from mnist_pipeline.report.activations import look, scaled

log = logging.getLogger(__name__)


@dataclass
class Served:
    network: nn.Module  # raw pixels (N, 28, 28), 0-255, in; logits out
    source: str  # where it came from, for the page and the log

    def about(self) -> str:
        convs = [m.out_channels for m in self.network.modules() if isinstance(m, nn.Conv2d)]
        params = sum(p.numel() for p in self.network.parameters())
        shape = f"convolutions of {', '.join(map(str, convs))} maps" if convs else "no convolution"
        return f"{self.source}: {shape}, {params:,} parameters"


def open_model(given: Path | None) -> Served:
    """The model file given, else the champion, else models/model.pt; `CheckpointError` saying
    what was tried when there is none."""
    if given is not None:
        return Served(model_file.load_served(given), str(given))
    weights = champion_weights(Path(tempfile.mkdtemp(prefix="mnist-demo-")))
    if weights is not None:
        return Served(model_file.load_served(weights), CHAMPION)
    if FALLBACK.exists():
        return Served(model_file.load_served(FALLBACK), str(FALLBACK))
    raise model_file.CheckpointError(
        f"No model yet: no {CHAMPION} in the tracking store and no {FALLBACK}. Train one with "
        "`make repro` (or `dvc repro`), then reload this page."
    )


def champion_weights(folder: Path) -> Path | None:
    """The champion's weights file, fetched from the registry into `folder`; None if there is no
    store (a missing SQLite file is not created), no champion, or it cannot be fetched."""
    from mnist_pipeline.tracking.store import tracking_uri  # imports mlflow: only when needed

    store = tracking_uri()
    if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).is_file():
        return None
    import mlflow.artifacts

    mlflow.set_tracking_uri(store)
    try:
        local = mlflow.artifacts.download_artifacts(f"{CHAMPION}/artifacts", dst_path=str(folder))
    except Exception as e:  # MLflow's errors: no such model or alias, store unreachable
        log.info("no champion to serve (%s: %s)", type(e).__name__, str(e).splitlines()[0][:200])
        return None
    found = sorted(Path(local).glob("*.pt"))
    return found[0] if found else None


def answer(served: Served, data: bytes, name: str) -> dict:
    """What the page shows for one image file; `ImageError` (one line) when it holds no digit."""
    pixels = load(data, name)
    seen = look(served.network, torch.from_numpy(pixels)[None])
    probabilities = torch.softmax(seen.logits[0].double(), dim=0).tolist()
    layers = []
    for n, stage in enumerate(seen.stages, start=1):
        layers.append({"name": f"convolved {n}", "maps": encoded(scaled(stage.convolved[0]))})
        if stage.pooled is not None:
            layers.append({"name": f"pooled {n}", "maps": encoded(scaled(stage.pooled[0]))})
    return {
        "digit": int(np.argmax(probabilities)),
        "probabilities": [round(p, 6) for p in probabilities],
        "input": encoded(np.clip(pixels, 0, 255).round().astype(np.uint8)[None]),
        "filters": None if seen.filters is None else encoded(scaled(seen.filters)),
        "layers": layers,
    }


def encoded(maps: np.ndarray) -> dict:
    """uint8 maps (C, H, W) as the page reads them: the shape, and the bytes in base64."""
    return {"shape": list(maps.shape), "data": base64.b64encode(maps.tobytes()).decode()}
