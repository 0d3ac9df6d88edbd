"""The trained model on disk: weights, the config that builds the network, and its normalisation.

Only tensors and plain containers are stored, so loading goes through `torch.load(...,
weights_only=True)`, and the network is built only if the file names one of the project's own
classes: a file from elsewhere cannot run code when opened.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from mnist_pipeline.atomic import atomic_path


def save(path: Path, model: nn.Module, model_cfg: dict[str, Any], stats: dict[str, float]) -> None:
    payload = {
        "model": model_cfg,
        "state_dict": model.state_dict(),
        "normalisation": {"mean": stats["mean"], "std": stats["std"]},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


NETWORKS = ("mnist_pipeline.model.networks.MLP", "mnist_pipeline.model.networks.ConvNet")


class CheckpointError(ValueError):
    """A model file that is not one of ours, or that could run code when unpickled."""


def load(path: Path) -> tuple[nn.Module, dict[str, float]]:
    """Rebuild the network from its stored config and load its weights (safely)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds pickled Python objects, not only tensors and plain values; refusing to "
            f"load it, since unpickling can run arbitrary code ({str(e).splitlines()[0]})"
        ) from e
    if (
        not isinstance(payload, dict)
        or not {"model", "state_dict", "normalisation"} <= payload.keys()
    ):
        raise CheckpointError(f"{path} is not a model saved by this project's train stage")
    spec = payload["model"]
    nested = any(isinstance(value, dict) for value in spec.values())
    if spec.get("_target_") not in NETWORKS or nested or "_args_" in spec:
        # instantiate() calls whatever `_target_` names: build only the project's own networks
        raise CheckpointError(
            f"{path} asks to build {spec.get('_target_')!r}, which is not one of {NETWORKS}"
        )
    model = instantiate(spec)
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload["normalisation"]
