"""The trained model on disk: weights, the config that builds the network, and its normalisation.

Only tensors and plain containers are stored, so loading goes through `torch.load(...,
weights_only=True)`. The network is then built by calling one of the project's own classes
directly, with keyword arguments checked against an allow-list (plain values, keywords the class
takes, no `${...}` interpolation): never through Hydra's `instantiate`, which would call any
`_target_` the file names, nested ones included, and resolve `${oc.env:...}`. A file from
elsewhere cannot run code when opened.
"""

from __future__ import annotations

import inspect
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnist_pipeline.model.doubt import Doubt
from mnist_pipeline.model.networks import MLP, ConvNet, Standardise
from mnist_pipeline.utils.atomic import atomic_path
from mnist_pipeline.utils.paths import PIPELINE

NETWORKS: dict[str, type[nn.Module]] = {
    "mnist_pipeline.model.networks.MLP": MLP,
    "mnist_pipeline.model.networks.ConvNet": ConvNet,
}
PLAIN = (bool, int, float, str, type(None))


class CheckpointError(ValueError):
    """A model file that is unreadable, not one of ours, or that could run code when unpickled or
    built; the message names the file."""


def save(
    path: Path,
    model: nn.Module,
    model_cfg: dict[str, Any],
    stats: dict[str, float],
    doubt: Doubt | None = None,
) -> None:
    """Write the model file; the same weights and config always give the same bytes.

    `torch.save` to an open file, not to a path: given a path, torch names the archive inside
    after the file's stem, here `atomic_path`'s random temporary name, so every save would differ
    and DVC would see a new model after an identical training.
    """
    payload = {
        "model": model_cfg,
        "state_dict": model.state_dict(),
        "normalisation": {"mean": stats["mean"], "std": stats["std"]},
    } | ({"doubt": doubt.payload()} if doubt else {})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


def load(path: Path) -> tuple[nn.Module, dict[str, float]]:
    """Rebuild the network from its stored config and load its weights (safely)."""
    model, norm, _ = read(path)
    return model, norm


def read(path: Path) -> tuple[nn.Module, dict[str, float], Doubt]:
    """The network, its normalisation and its "not sure" rule (none in a file from before it)."""
    check_readable(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} holds pickled Python objects, not only tensors and plain values; refusing to "
            f"load it, since unpickling can run arbitrary code ({str(e).splitlines()[0]})"
        ) from e
    except Exception as e:  # a damaged archive: torch's RuntimeError, OSError, EOFError, ...
        raise unreadable(path, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from e
    if (
        not isinstance(payload, dict)
        or not {"model", "state_dict", "normalisation"} <= payload.keys()
    ):
        raise CheckpointError(f"{path} is not a model saved by this project's train stage")
    model = build(path, payload["model"])
    norm = payload["normalisation"]
    if not (isinstance(norm, dict) and all(plain_number(norm.get(k)) for k in ("mean", "std"))):
        raise CheckpointError(f"{path}: normalisation={norm!r} is not a plain mean and std")
    if not (math.isfinite(norm["mean"]) and math.isfinite(norm["std"]) and norm["std"] > 0):
        raise CheckpointError(
            f"{path}: normalisation={norm!r} needs a finite mean and a positive, finite std "
            "(every answer would be NaN)"
        )
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: the weights do not fit the network it names ({e})") from e
    bad = [name for name, t in model.state_dict().items() if not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(
            f"{path}: weights {', '.join(bad[:5])} hold NaN or infinite values (a training that "
            "diverged, or a damaged file); every answer would be NaN"
        )
    try:
        doubt = Doubt.from_payload(payload["doubt"]) if "doubt" in payload else Doubt()
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    return model.eval(), {"mean": float(norm["mean"]), "std": float(norm["std"])}, doubt


def check_readable(path: Path) -> None:
    """Refuse, naming the file, what cannot be a `torch.save` archive, before torch reads it.

    `torch.save` writes a zip archive whose directory is at its end: a file cut short (a copy or
    download interrupted) or overwritten with anything else is not a zip archive, and torch would
    fail on it with errors that name neither the file nor the fix ("PytorchStreamReader failed
    ...", "Invalid argument", or a pickling error that suggests `weights_only=False`).
    """
    if not path.exists():
        raise unreadable(path, "no such file")
    if not path.is_file():
        raise unreadable(path, "not a file")
    try:
        size, archive = path.stat().st_size, zipfile.is_zipfile(path)
    except OSError as e:
        raise unreadable(path, e.strerror or str(e)) from e
    if size == 0:
        raise unreadable(path, "the file is empty")
    if not archive:
        raise unreadable(path, f"{size} bytes that are not a PyTorch archive: cut short or garbage")


def unreadable(path: Path, reason: str) -> CheckpointError:
    """The pipeline's own model file gets the pipeline's remedies; any other, none to guess."""
    remedy = (
        " Run `dvc repro train` to train it again, or `dvc pull` to fetch it from the DVC remote."
        if path.resolve() == PIPELINE.model.resolve()
        else ""
    )
    return CheckpointError(f"{path} cannot be read as a model file ({reason}).{remedy}")


class Served(nn.Sequential):
    """The network behind a `Standardise` layer: raw 28x28 pixels (0-255) in, logits out; with
    the model's "not sure" rule beside it (`doubt.judge(logits, pixels)`)."""

    def __init__(self, model: nn.Module, norm: dict[str, float], doubt: Doubt) -> None:
        super().__init__(Standardise(norm["mean"], norm["std"]), model)
        self.doubt = doubt


def load_served(path: Path) -> Served:
    return Served(*read(path)).eval()


def build(path: Path, spec: object) -> nn.Module:
    """Call the project's network class named by `spec["_target_"]` with `spec`'s other keys,
    each checked: a keyword the class's constructor takes, a plain value or a list of them."""
    target = spec.get("_target_") if isinstance(spec, dict) else None
    cls = NETWORKS.get(target) if isinstance(target, str) else None
    if cls is None or not isinstance(spec, dict):
        raise CheckpointError(
            f"{path} asks to build {target!r}, which is not one of {tuple(NETWORKS)}"
        )
    takes = set(inspect.signature(cls).parameters)
    kwargs = {key: value for key, value in spec.items() if key != "_target_"}
    for key, value in kwargs.items():
        if not isinstance(key, str) or key not in takes:
            raise CheckpointError(
                f"{path}: model key {key!r} is not a parameter of {target} ({sorted(takes)})"
            )
        check_plain(path, f"model.{key}", value)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot build {target} from its config ({e})") from e


def check_plain(path: Path, key: str, value: object) -> None:
    """Refuse anything but a plain value or a flat list of them, and any `${...}` string."""
    items = list(value) if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, PLAIN):
            raise CheckpointError(
                f"{path}: {key}={value!r} holds {type(item).__name__} {item!r}; a model file "
                f"may hold only numbers, strings, booleans, None and lists of them"
            )
        if isinstance(item, str) and "${" in item:
            raise CheckpointError(
                f"{path}: {key}={value!r} is an interpolation; a model file holds plain values"
            )


def plain_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
