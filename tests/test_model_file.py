"""The model file: loading one never runs code it names, and saving is byte-for-byte repeatable."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra.utils import instantiate

from mnist_pipeline.model import model_file
from mnist_pipeline.model.networks import ConvNet
from workspace import REPO

CONVNET = "mnist_pipeline.model.networks.ConvNet"
NORM = {"mean": 0.1, "std": 0.3}


def write(path: Path, spec: dict[str, Any]) -> Path:
    """A model file as train writes it, but holding `spec` as the network's config."""
    torch.save({"model": spec, "state_dict": ConvNet().state_dict(), "normalisation": NORM}, path)
    return path


class Payload:
    """Stands for anything that is not a tensor: unpickling it would run its module's code."""


def test_checkpoint_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"model": {}, "state_dict": {}, "normalisation": Payload()}, path)
    with pytest.raises(model_file.CheckpointError, match="refusing to load it"):
        model_file.load(path)


def test_checkpoint_round_trip_and_foreign_files(tmp_path: Path) -> None:
    model = ConvNet()
    cfg = {"_target_": "mnist_pipeline.model.networks.ConvNet"}
    model_file.save(tmp_path / "model.pt", model, cfg, {"mean": 0.1, "std": 0.3})
    loaded, norm = model_file.load(tmp_path / "model.pt")
    assert norm == {"mean": 0.1, "std": 0.3}
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(model_file.CheckpointError, match="not a model saved by this project"):
        model_file.load(tmp_path / "other.pt")


def test_checkpoint_naming_a_foreign_callable_is_refused(tmp_path: Path) -> None:
    """weights_only stops pickles, but `_target_` would still be called: only our networks are."""
    path = tmp_path / "model.pt"
    payload = {"model": {"_target_": "os.system", "_args_": ["true"]}, "state_dict": {},
               "normalisation": {"mean": 0.1, "std": 0.3}}  # fmt: skip
    torch.save(payload, path)
    with pytest.raises(model_file.CheckpointError, match=r"asks to build 'os\.system'"):
        model_file.load(path)


def nested(call: dict[str, Any], where: str) -> dict[str, Any]:
    """A ConvNet config with `call` hidden inside a knob, where Hydra would build it too."""
    if where == "in a list":
        return {"_target_": CONVNET, "hidden": [120, call]}
    if where == "as a knob":
        return {"_target_": CONVNET, "dropout": call}
    return call  # as the network itself


WHERE = ["in a list", "as a knob", "as the network"]


@pytest.mark.parametrize("where", WHERE)
def test_a_file_naming_path_touch_writes_nothing(tmp_path: Path, where: str) -> None:
    marker = tmp_path / "touched"
    touch = {"_target_": "pathlib.Path.touch", "_args_": [{"_target_": "pathlib.Path",
             "_args_": [str(marker)]}]}  # fmt: skip
    path = write(tmp_path / "model.pt", nested(touch, where))
    with pytest.raises(model_file.CheckpointError, match=re.escape(str(path))):
        model_file.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("where", WHERE)
def test_a_file_naming_numpy_save_writes_nothing(tmp_path: Path, where: str) -> None:
    target = tmp_path / "written"
    save = {"_target_": "numpy.save", "_args_": [str(target), [1, 2, 3]]}
    path = write(tmp_path / "model.pt", nested(save, where))
    with pytest.raises(model_file.CheckpointError, match=r"numpy\.save"):
        model_file.load(path)
    assert not target.exists() and not target.with_suffix(".npy").exists()


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize(
    ("module", "name"), [("mlflow.pyfunc", "load_model"), ("torch.hub", "load")]
)
def test_a_file_naming_a_model_loader_is_refused_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, name: str, where: str
) -> None:
    """Loading another model would run that model's code (a pickle, a hub repo's hubconf.py)."""
    calls: list[tuple[Any, ...]] = []
    # on the module itself: `mlflow.pyfunc` may still be MLflow's lazy stand-in for it
    recorder = lambda *args, **kwargs: calls.append(args)  # noqa: E731
    monkeypatch.setattr(importlib.import_module(module), name, recorder)
    load = {"_target_": f"{module}.{name}", "_args_": ["models:/anything@champion"]}
    path = write(tmp_path / "model.pt", nested(load, where))
    with pytest.raises(model_file.CheckpointError, match=re.escape(f"{module}.{name}")):
        model_file.load(path)
    assert calls == []


def test_an_interpolation_is_refused_not_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`${oc.env:...}` would read the loader's environment into the model (and its errors)."""
    monkeypatch.setenv("HOME", "/home/secret-home-of-the-loader")
    path = write(tmp_path / "model.pt", {"_target_": CONVNET, "activation": "${oc.env:HOME}"})
    with pytest.raises(model_file.CheckpointError, match=r"model\.activation") as info:
        model_file.load(path)
    assert "interpolation" in str(info.value) and "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"_target_": CONVNET, "_partial_": True}, "'_partial_' is not a parameter of"),
        ({"_target_": CONVNET, "_convert_": "all"}, "'_convert_' is not a parameter of"),
        ({"_target_": CONVNET, "__init__": 1}, "'__init__' is not a parameter of"),
        ({"_target_": CONVNET, "channels": [[6], 16]}, r"model\.channels=.*holds list"),
        ({"_target_": CONVNET, "channels": {"a": 6}}, r"model\.channels=.*holds dict"),
        ({"_target_": CONVNET, "stride": 0}, "cannot build .*stride=0 must be a whole number"),
        ({"_target_": f"{CONVNET}.__init__"}, "asks to build"),
        (["not", "a", "dict"], "asks to build None"),
    ],
)
def test_only_the_constructors_own_keywords_with_plain_values_are_accepted(
    tmp_path: Path, spec: Any, message: str
) -> None:
    path = tmp_path / "model.pt"
    torch.save({"model": spec, "state_dict": {}, "normalisation": NORM}, path)
    with pytest.raises(model_file.CheckpointError, match=message):
        model_file.load(path)


@pytest.mark.parametrize("config", sorted((REPO / "conf" / "model").glob("*.yaml")), ids=str)
def test_every_model_config_round_trips(tmp_path: Path, config: Path) -> None:
    """The allow-list is not too strict: each network train can build loads back, same outputs."""
    cfg = yaml.safe_load(config.read_text())
    model = instantiate(cfg).eval()
    model_file.save(tmp_path / "model.pt", model, cfg, NORM)
    loaded, norm = model_file.load(tmp_path / "model.pt")
    images = torch.rand(4, 1, 28, 28)
    assert norm == NORM and type(loaded) is type(model)
    assert torch.equal(loaded(images), model(images))


def test_the_same_weights_give_the_same_bytes(tmp_path: Path) -> None:
    """DVC hashes models/model.pt: an identical training must not look like a new model."""
    model, cfg = ConvNet(), {"_target_": CONVNET}
    model_file.save(tmp_path / "model.pt", model, cfg, NORM)
    model_file.save(tmp_path / "elsewhere" / "other.pt", model, cfg, NORM)
    first = (tmp_path / "model.pt").read_bytes()
    assert first == (tmp_path / "elsewhere" / "other.pt").read_bytes()
    model_file.save(tmp_path / "model.pt", model, cfg, NORM)  # over itself, a new temporary name
    assert (tmp_path / "model.pt").read_bytes() == first


def edited(tmp_path: Path, edit) -> Path:
    """A model file loaded as data, edited, and saved again, as a user or an attacker would."""
    path = tmp_path / "model.pt"
    model_file.save(path, ConvNet(), {"_target_": "mnist_pipeline.model.networks.ConvNet"},
                    {"mean": 0.13, "std": 0.31})  # fmt: skip
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


def nan_weight(payload: dict) -> None:
    payload["state_dict"]["3.weight"][0, 0, 0, 0] = float("nan")


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda p: p["normalisation"].update(std=0.0), "positive, finite std"),
        (lambda p: p["normalisation"].update(std=float("nan")), "positive, finite std"),
        (lambda p: p["normalisation"].update(mean=float("inf")), "finite mean"),
        (nan_weight, "weights 3.weight hold NaN"),
        (lambda p: p["model"].update(hidden=[-5]), "model.hidden=[-5]"),
        (lambda p: p["model"].update(hidden=[10**12]), "model.hidden=[1000000000000]"),
        (lambda p: p["model"].update(channels=[6, 10**9]), "model.channels=[6, 1000000000]"),
    ],
    ids=["zero-std", "nan-std", "inf-mean", "nan-weight", "negative-width", "huge-width",
         "huge-channels"],
)  # fmt: skip
def test_a_file_that_would_answer_nonsense_is_refused_naming_the_field(
    tmp_path: Path, edit, named: str
) -> None:
    """NaN answers with exit 0, or an allocation of terabytes, before; now one line."""
    with pytest.raises(model_file.CheckpointError) as info:
        model_file.load(edited(tmp_path, edit))
    message = str(info.value)
    assert named in message and "\n" not in message, message
