"""Resuming a killed training: the same training as an uninterrupted one, from a checkpoint that is
whole and holds only data. Tiny synthetic data, so every test here runs in seconds on a CPU."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from mnist_pipeline.config.params import compose
from mnist_pipeline.training.build import build
from mnist_pipeline.training.resume import Interrupted, Resume
from synthetic import write_processed
from workspace import REPO

OVERRIDES = [
    "model=mlp",  # dropout: a resumed run that redraws epoch 0's masks trains other weights
    "trainer.max_epochs=4",
    "trainer.enable_progress_bar=false",
    "data.batch_size=64",
]


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small processed dataset, as preprocess writes it."""
    return write_processed(tmp_path_factory.mktemp("processed"))


class Killed(Exception):
    pass


class KillAfter(pl.Callback):
    """Ends the training abruptly once `epochs` epochs are checkpointed, as a kill would."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 == self.epochs:
            raise Killed


def weights(module: pl.LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def fitted(cfg, processed: Path, resume: Resume, *callbacks: pl.Callback) -> pl.LightningModule:
    """The recipe's order (`train.train`): the Resume among the callbacks, then `fit` in the run
    it names (here an id; the recipe's comes from MLflow)."""
    fit = build(cfg, processed, [resume, *callbacks])
    resume.fit(fit, resume.run_id or "run")
    return fit


def test_resumed_training_ends_with_the_uninterrupted_weights(
    processed: Path, tmp_path: Path
) -> None:
    cfg = compose(OVERRIDES, conf_dir=REPO / "conf")
    expected = weights(fitted(cfg, processed, Resume(tmp_path / "whole", "fp")).module)

    with pytest.raises(Killed):
        fitted(cfg, processed, Resume(tmp_path / "killed", "fp"), KillAfter(2))

    other = Resume(tmp_path / "killed", "another config")
    assert other.interrupted is None and other.checkpoint.is_file()  # not its own: left alone
    again = Resume(tmp_path / "killed", "fp")  # a fresh process, which re-seeds too
    assert again.interrupted is not None and again.run_id == "run"
    second = fitted(cfg, processed, again)
    assert second.trainer.current_epoch == 4
    resumed = weights(second.module)
    assert [k for k in expected if not torch.equal(resumed[k], expected[k])] == []
    again.done()
    assert not (tmp_path / "killed").exists()


def test_checkpoint_holds_only_data(processed: Path, tmp_path: Path) -> None:
    """The random states included, all as data that weights_only=True loads."""
    cfg = compose([*OVERRIDES, "trainer.max_epochs=1", "scheduler=none"], conf_dir=REPO / "conf")
    resume = Resume(tmp_path, "fp")
    fitted(cfg, processed, resume)
    checkpoint = torch.load(resume.checkpoint, weights_only=True)
    assert checkpoint["epoch"] == 0
    state = checkpoint["callbacks"]["Resume"]
    assert (state["fingerprint"], state["run_id"]) == ("fp", "run")
    assert {"torch", "numpy", "python"} <= state["rng"].keys()
    assert "shuffles" in checkpoint["MNISTDataModule"]
    assert not list(tmp_path.glob("*.partial"))


def _truncated(path: Path) -> None:
    torch.save({"state_dict": {"w": torch.randn(256, 256)}, "loops": {}, "epoch": 3}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # power lost mid-write


DAMAGE = {
    "garbage": lambda path: path.write_bytes(os.urandom(4096)),
    "truncated": _truncated,
    "empty": lambda path: path.write_bytes(b""),
    "not-lightning": lambda path: torch.save({"weights": torch.zeros(3)}, path),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_unloadable_checkpoint_is_set_aside_and_training_starts_afresh(
    damage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    resume = Resume(tmp_path, "fp")
    damage(resume.checkpoint)
    damaged = resume.checkpoint.read_bytes()

    with caplog.at_level(logging.WARNING):
        assert resume.interrupted is None and resume.run_id is None
    assert not resume.checkpoint.exists()
    aside = tmp_path / "last.ckpt.corrupt"
    assert aside.read_bytes() == damaged  # kept for a look, never resumed
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(resume.checkpoint) in record.getMessage()
    assert str(aside) in record.getMessage()
    assert record.exc_info is None and "\n" not in record.getMessage()  # one line, no traceback

    again = Resume(tmp_path, "fp")  # a fresh training keeps the set-aside file out of its way
    assert again.interrupted is None
    again.done()
    assert aside.exists() and not resume.checkpoint.exists()


def test_epoch_checkpoint_is_fsynced_then_renamed_then_its_folder_fsynced(
    processed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, int]] = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino))
        fsync(fd)

    def spy_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("replace", os.stat(src).st_ino))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    cfg = compose([*OVERRIDES, "trainer.max_epochs=1", "scheduler=none"], conf_dir=REPO / "conf")
    resume = Resume(tmp_path / "ckpt", "fp")
    fitted(cfg, processed, resume)
    file, folder = resume.checkpoint.stat().st_ino, resume.folder.stat().st_ino
    assert events == [("fsync", file), ("replace", file), ("fsync", folder)]


class Payload:
    """Unpickling this makes a directory: what a poisoned checkpoint could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.marker),)


@pytest.fixture
def poisoned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Resume, Path]:
    """A last.ckpt that runs code when unpickled, in an environment whose torch.load would
    unpickle anything unless told weights_only=True."""
    marker = tmp_path / "pwned"
    resume = Resume(tmp_path / "ckpt", "fp")
    resume.checkpoint.parent.mkdir()
    torch.save({"state_dict": {}, "loops": {}, "x": Payload(marker)}, resume.checkpoint)
    torch.load(resume.checkpoint, weights_only=False)  # the payload is live...
    assert marker.is_dir()
    marker.rmdir()  # ...and armed again
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    return resume, marker


def test_checkpoint_with_code_is_refused_unrun(
    poisoned: tuple[Resume, Path], caplog: pytest.LogCaptureFixture
) -> None:
    resume, marker = poisoned
    with caplog.at_level(logging.WARNING):
        assert resume.interrupted is None
    assert not marker.exists()
    assert resume.checkpoint.with_name("last.ckpt.corrupt").exists()
    assert "last.ckpt" in caplog.text


def test_resuming_fit_loads_weights_only(poisoned: tuple[Resume, Path], processed: Path) -> None:
    resume, marker = poisoned
    fit = build(compose(OVERRIDES, conf_dir=REPO / "conf"), processed, [resume])
    resume.interrupted = Interrupted(resume.checkpoint, "run")  # as if it had passed the check
    refused: Exception | None = None
    try:
        resume.fit(fit, "run")
    except Exception as e:
        refused = e
    assert not marker.exists()  # nothing in the file was run...
    assert isinstance(refused, pickle.UnpicklingError)  # ...it was refused, unbuilt
    assert "weights_only" in str(refused)
