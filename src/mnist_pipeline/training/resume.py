"""Resuming a killed training where it stopped, in the same MLflow run, as if never stopped.

Every epoch ends with a Lightning checkpoint made durable before it replaces the last one (a kill
or a power loss mid-write leaves the previous one whole), beside a note of the MLflow run and a
fingerprint of the exact config and data it belongs to. Training the same config on the same data
again picks both up; anything else starts afresh. The folder is not a DVC output, so it survives
the stage being killed, and it is removed once the model is saved.

The checkpoint carries the random states (torch's, CUDA's, numpy's, Python's here; the shuffle
generator's in the data module's state), put back just before the first resumed batch: the resumed
epochs draw the dropout masks and batch orders the interrupted run would have, and end with the
same weights, bit for bit. It holds only tensors and plain data and is loaded as such
(`weights_only`), so a planted file cannot run code; one that does not load (cut short, garbage,
not Lightning's, holding objects) is set aside with a warning and training starts afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from mnist_pipeline.config.params import to_yaml
from mnist_pipeline.tracking.lineage import processed_data_digest
from mnist_pipeline.utils.atomic import durable_replace, write_json
from mnist_pipeline.utils.paths import CHECKPOINTS

if TYPE_CHECKING:
    from mnist_pipeline.training.build import Fit

log = logging.getLogger(__name__)

LIGHTNING_KEYS = {"state_dict", "loops", "optimizer_states", "pytorch-lightning_version"}


@dataclass(frozen=True)
class Interrupted:
    checkpoint: Path
    run_id: str


class Resume:
    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder, self.fingerprint = folder, fingerprint
        self.checkpoint, self.note = folder / "last.ckpt", folder / "run.json"
        self.corrupt = folder / "last.ckpt.corrupt"

    @staticmethod
    def fingerprint_of(*parts: str) -> str:
        """Of the given parts (config, data hash) and of the package's code: a checkpoint made by
        other code is not resumed."""
        package = Path(__file__).parents[1]
        code = [p.read_bytes() for p in sorted(package.rglob("*.py"))]
        return hashlib.sha256(b"\0".join([*(p.encode() for p in parts), *code])).hexdigest()

    def find(self) -> Interrupted | None:
        """The checkpoint and run of an interrupted training of this very config, if any. The
        checkpoint is loaded once here, as data only: one that fails is set aside, not resumed."""
        run_id = self._noted_run()
        if run_id is None or not self.checkpoint.is_file():
            return None
        problem = unloadable(self.checkpoint)
        if problem is None:
            return Interrupted(self.checkpoint, run_id)
        if rank_zero_only.rank == 0:  # under DDP every process looks; one moves it
            os.replace(self.checkpoint, self.corrupt)
            log.warning(
                "%s does not load (%s): set aside as %s; training starts afresh",
                *(self.checkpoint, problem, self.corrupt),
            )
        return None

    def _noted_run(self) -> str | None:
        """The run in the note, if the note is whole and of this fingerprint."""
        try:
            note = json.loads(self.note.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(note, dict) or note.get("fingerprint") != self.fingerprint:
            return None
        run_id = note.get("run_id")
        return run_id if isinstance(run_id, str) else None

    def note_run(self, run_id: str | None) -> None:
        """Note the run this training tracks to; only the process that tracks (global rank 0)
        has its id, the others pass None."""
        if run_id:
            if self._noted_run() is None:
                shutil.rmtree(self.folder, ignore_errors=True)  # another config's leftovers
            write_json(self.note, {"fingerprint": self.fingerprint, "run_id": run_id})

    def start(self, run_id: str | None) -> EpochCheckpoint:
        """Note the run and checkpoint every epoch, for a caller that has its run before it
        builds the Trainer (the stage builds first, to learn its rank: `note_run`)."""
        self.note_run(run_id)
        return EpochCheckpoint(self)

    def done(self) -> None:
        """Remove the training's state; a checkpoint set aside stays, as the warning said."""
        if not self.corrupt.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        for path in self.folder.iterdir():
            if path != self.corrupt:
                path.unlink(missing_ok=True)


def pipeline_resume(cfg: DictConfig, data_dir: Path) -> Resume:
    """Where the pipeline's training of this config on this data keeps its checkpoints."""
    return Resume(CHECKPOINTS, Resume.fingerprint_of(to_yaml(cfg), processed_data_digest(data_dir)))


def unloadable(path: Path) -> str | None:
    """Why `path` is not a Lightning checkpoint of plain data, in one line; None if it is one.

    `weights_only=True` refuses any object but tensors and plain containers before building it,
    so unpickling cannot run code. torch's messages run to paragraphs of advice; the shortest line
    names the culprit ("Unsupported operand 54", "unsupported GLOBAL posix.system ...").
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # cut short, garbage, objects: torch raises many kinds
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = min(lines, key=len).split(". ")[0][:200] if lines else "empty"
        return f"{type(e).__name__}: {detail}"
    if not isinstance(checkpoint, dict) or not checkpoint.keys() >= LIGHTNING_KEYS:
        return "not a Lightning checkpoint"
    return None


def fit_from(fit: Fit, interrupted: Interrupted | None) -> None:
    """Fit, from the interrupted training's checkpoint if any, loaded as data only: explicit, so
    neither an older torch's default nor TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD can make it unpickle
    arbitrary objects."""
    ckpt_path = interrupted.checkpoint if interrupted else None
    fit.trainer.fit(fit.module, datamodule=fit.datamodule, ckpt_path=ckpt_path, weights_only=True)


class EpochCheckpoint(pl.Callback):
    """Save the whole training state after every epoch, durably, with the random states.

    Every process calls it: under DDP `save_checkpoint` is collective (rank 0 writes, all wait).
    """

    def __init__(self, resume: Resume) -> None:
        self.resume = resume
        self.restored_rng: dict[str, Any] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        partial = self.resume.checkpoint.with_suffix(".ckpt.partial")
        trainer.save_checkpoint(partial, weights_only=False)  # everything, not the weights alone
        if trainer.is_global_zero:  # a kill or power loss mid-write leaves the last one whole
            durable_replace(partial, self.resume.checkpoint)

    def state_dict(self) -> dict[str, Any]:
        """Called as the checkpoint is made, at an epoch's end: the states the next epoch starts
        from (rank 0's are saved; every rank is seeded alike)."""
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Called as the checkpoint is loaded, before the strategy's setup: kept for train start."""
        self.restored_rng = state_dict["rng"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The last hook before the first resumed batch, after the seeding and anything in setup
        that might draw (the data module restores its own shuffle generator)."""
        if self.restored_rng is not None:
            set_rng_states(self.restored_rng)
            self.restored_rng = None


def rng_states() -> dict[str, Any]:
    """The global random states as tensors, ints, floats and lists: `weights_only` loads them."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, python_gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), python_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # the current device's
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, python_gauss = states["python"]
    random.setstate((version, tuple(internal), python_gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
