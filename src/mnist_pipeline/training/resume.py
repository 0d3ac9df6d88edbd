"""Resuming a killed training where it stopped, in the same MLflow run.

Every epoch ends with a Lightning checkpoint written atomically (a kill mid-write leaves the
previous one whole), beside a note of the MLflow run and a fingerprint of the exact config and
data it belongs to. Training the same config on the same data again picks both up; anything else
starts afresh. The folder is not a DVC output, so it survives the stage being killed, and it is
removed once the model is saved.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig

from mnist_pipeline.atomic import write_json
from mnist_pipeline.config import to_yaml
from mnist_pipeline.paths import CHECKPOINTS
from mnist_pipeline.tracking.lineage import processed_data_digest


@dataclass(frozen=True)
class Interrupted:
    checkpoint: Path
    run_id: str


class Resume:
    def __init__(self, folder: Path, fingerprint: str) -> None:
        self.folder, self.fingerprint = folder, fingerprint
        self.checkpoint, self.note = folder / "last.ckpt", folder / "run.json"

    @staticmethod
    def fingerprint_of(*parts: str) -> str:
        """Of the given parts (config, data hash) and of the package's code: a checkpoint made by
        other code is not resumed."""
        package = Path(__file__).parents[1]
        code = [p.read_bytes() for p in sorted(package.rglob("*.py"))]
        return hashlib.sha256(b"\0".join([*(p.encode() for p in parts), *code])).hexdigest()

    def find(self) -> Interrupted | None:
        """The checkpoint and run of an interrupted training of this very config, if any."""
        if not (self.checkpoint.is_file() and self.note.is_file()):
            return None
        note = json.loads(self.note.read_text())
        if note.get("fingerprint") != self.fingerprint:
            return None
        return Interrupted(self.checkpoint, note["run_id"])

    def start(self, run_id: str | None) -> EpochCheckpoint:
        """Note the run (the process that tracks, rank 0, has its id) and checkpoint every epoch."""
        if run_id:
            if self.find() is None:
                shutil.rmtree(self.folder, ignore_errors=True)  # another config's leftovers
            write_json(self.note, {"fingerprint": self.fingerprint, "run_id": run_id})
        return EpochCheckpoint(self)

    def done(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def pipeline_resume(cfg: DictConfig, data_dir: Path) -> Resume:
    """Where the pipeline's training of this config on this data keeps its checkpoints."""
    return Resume(CHECKPOINTS, Resume.fingerprint_of(to_yaml(cfg), processed_data_digest(data_dir)))


class EpochCheckpoint(pl.Callback):
    """Save the whole training state after every epoch, atomically.

    Every process calls it: under DDP `save_checkpoint` is collective (rank 0 writes, all wait).
    """

    def __init__(self, resume: Resume) -> None:
        self.resume = resume

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        partial = self.resume.checkpoint.with_suffix(".ckpt.partial")
        trainer.save_checkpoint(partial)
        if trainer.is_global_zero:  # a kill mid-write leaves the last one whole
            os.replace(partial, self.resume.checkpoint)
