"""An unreadable `models/model.pt` (cut short, garbage, empty, a folder, missing) is refused
naming the file and what to run, by `model_file.load` and by the evaluate stage: no traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mnist_pipeline.config.params import compose, to_yaml
from mnist_pipeline.model import model_file
from mnist_pipeline.model.networks import ConvNet
from mnist_pipeline.tracking import run_file
from mnist_pipeline.tracking.run_file import model_digest
from mnist_pipeline.tracking.store import TrackingError
from mnist_pipeline.utils.paths import Outputs
from workspace import REPO, clean_env

CFG = {"_target_": "mnist_pipeline.model.networks.ConvNet"}
NORM = {"mean": 0.1, "std": 0.3}


def good(path: Path) -> bytes:
    model_file.save(path, ConvNet(), CFG, NORM)
    return path.read_bytes()


DAMAGE: dict[str, Callable[[Path], object]] = {
    "truncated": lambda p: p.write_bytes(good(p)[: len(good(p)) // 2]),
    "truncated-tail": lambda p: p.write_bytes(good(p)[:-10]),
    "garbage": lambda p: p.write_bytes(os.urandom(4096)),
    "text": lambda p: p.write_bytes(b"version https://git-lfs.github.com/spec/v1\n"),
    "empty": lambda p: p.write_bytes(b""),
    "directory": lambda p: p.mkdir(),
    "missing": lambda p: None,
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_an_unreadable_model_file_is_refused_naming_it(
    tmp_path: Path, damage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline's own models/model.pt with the pipeline's remedies; any other file named
    alone (`--model /elsewhere.pt` is no DVC output to repro or pull)."""
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()
    for path, remedies in ((Path("models/model.pt"), True), (tmp_path / "given.pt", False)):
        damage(path)
        with pytest.raises(model_file.CheckpointError) as info:
            model_file.load(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message
        assert ("dvc repro train" in message and "dvc pull" in message) == remedies, message


def record_for(model: Path) -> None:
    """models/mlflow_run.json vouching for `model` as it is (its digest matches)."""
    record = {"run_id": "0" * 32, "experiment": "mnist", "experiment_id": "1",
              "store": "sqlite:///mlflow.db", "model_sha256": model_digest(model)}  # fmt: skip
    (model.parent / "mlflow_run.json").write_text(json.dumps(record))


@pytest.mark.slow  # a real stage: seconds of imports
def test_the_evaluate_stage_says_what_to_run(tmp_path: Path) -> None:
    """A garbage model.pt that models/mlflow_run.json vouches for reaches the model loader."""
    (tmp_path / "params.yaml").write_text(to_yaml(compose([], conf_dir=REPO / "conf")))
    model = tmp_path / "models" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(os.urandom(2048))
    record_for(model)
    result = subprocess.run(
        [sys.executable, "-m", "mnist_pipeline.evaluate"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert re.search(r"models/model\.pt cannot be read .*`dvc repro train`.*`dvc pull`", line)
    assert not (tmp_path / "reports").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("damage", ["missing", "directory"])
def test_evaluate_names_a_model_file_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    """Evaluate reads models/mlflow_run.json first, and hashes the model it names."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    out = Outputs.under(tmp_path / "models")
    out.model.parent.mkdir()
    out.model.write_bytes(b"weights")
    record_for(out.model)
    out.model.unlink()
    if damage == "directory":
        out.model.mkdir()
    with pytest.raises(TrackingError) as info:
        run_file.read_checked(out, None)
    message = str(info.value)
    assert f"{out.model} cannot be read" in message and "`dvc pull`" in message
    assert "Nothing was evaluated" in message
