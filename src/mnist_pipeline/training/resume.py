"""Resuming a killed training where it stopped, in the same MLflow run, as if never stopped.

Every epoch ends with a Lightning checkpoint made durable before it replaces the last one (a kill
or a power loss mid-write leaves the previous one whole). It names the MLflow run, and carries a
fingerprint of the exact config, data and code it belongs to. Training the same config on the same
data again picks both up; anything else starts afresh. The folder is not a DVC output, so it
survives the stage being killed, and it is removed once the model is saved.

The checkpoint carries the random states (torch's, CUDA's, numpy's, Python's here; the shuffle
generator's in the data module's state), put back just before the first resumed batch: the resumed
epochs draw the dropout masks and batch orders the interrupted run would have, and end with the
same weights, bit for bit. It holds only tensors and plain data and is loaded as such
(`weights_only`), so a planted file cannot run code; one that does not load (cut short, garbage,
not Lightning's, holding objects) is set aside with a warning and training starts afresh.

Lightning's own `ckpt_path="last"` finds a last checkpoint, and no more: its resumed weights differ
from the uninterrupted ones (the random states are not restored), and a file cut short stops the
training with a traceback (`benchmarks/lightning_last_checkpoint.py`, docs/results.md).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import random
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
from mnist_pipeline.utils.atomic import durable_replace
from mnist_pipeline.utils.paths import CHECKPOINTS

if TYPE_CHECKING:
    from mnist_pipeline.training.build import Fit

log = logging.getLogger(__name__)

LIGHTNING_KEYS = {"state_dict", "loops", "optimizer_states", "pytorch-lightning_version"}


@dataclass(frozen=True)
class Interrupted:
    checkpoint: Path
    run_id: str | None


class Resume(pl.Callback):
    """The one piece that resumes: give it to the Trainer as a callback, open the MLflow run of
    `run_id` (None: a new one), `fit` within it, and say `done` once the model is saved.

    Every process has one: under DDP `save_checkpoint` is collective (rank 0 writes, all wait).
    Off (`Resume.off()`, for ad-hoc runs) it keeps nothing and finds nothing.
    """

    def __init__(self, folder: Path | None, fingerprint: str = "") -> None:
        self.folder, self.fingerprint = folder, fingerprint
        self.tracked_run: str | None = None
        self.restored_rng: dict[str, Any] | None = None

    @classmethod
    def pipeline(cls, cfg: DictConfig, data_dir: Path) -> Resume:
        """Where the pipeline's training of this config on this data keeps its checkpoints."""
        return cls(CHECKPOINTS, fingerprint_of(to_yaml(cfg), processed_data_digest(data_dir)))

    @classmethod
    def off(cls) -> Resume:
        return cls(None)

    @property
    def checkpoint(self) -> Path:
        assert self.folder is not None
        return self.folder / "last.ckpt"

    @functools.cached_property
    def interrupted(self) -> Interrupted | None:
        """The checkpoint and run of an interrupted training of this very config, if any. The
        checkpoint is loaded once here, as data only: one that fails is set aside, not resumed."""
        if self.folder is None or not self.checkpoint.is_file():
            return None
        state, problem = load_state(self.checkpoint, self.state_key)
        if problem is None:
            if state.get("fingerprint") != self.fingerprint:  # another config's: replaced later
                return None
            return Interrupted(self.checkpoint, state.get("run_id"))
        if rank_zero_only.rank == 0:  # under DDP every process looks; one moves it
            corrupt = self.checkpoint.with_suffix(".ckpt.corrupt")
            os.replace(self.checkpoint, corrupt)
            log.warning(
                "%s does not load (%s): set aside as %s; training starts afresh",
                *(self.checkpoint, problem, corrupt),
            )
        return None

    @property
    def run_id(self) -> str | None:
        """The MLflow run to go on with; None: open a new one."""
        return self.interrupted.run_id if self.interrupted else None

    def fit(self, fit: Fit, run_id: str | None) -> None:
        """Fit, noting `run_id` in every checkpoint, from the interrupted training's checkpoint if
        any. Loaded as data only: explicit, so neither an older torch's default nor
        TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD can make it unpickle arbitrary objects."""
        self.tracked_run = run_id
        ckpt_path = self.interrupted.checkpoint if self.interrupted else None
        fit.trainer.fit(
            fit.module, datamodule=fit.datamodule, ckpt_path=ckpt_path, weights_only=True
        )

    def done(self) -> None:
        """Remove the training's state; a checkpoint set aside stays, as the warning said."""
        if self.folder is None or not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if path.suffix != ".corrupt":
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # kept while it holds a checkpoint set aside
            self.folder.rmdir()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The whole training state, durably: a kill or power loss mid-write leaves the last
        checkpoint whole."""
        if self.folder is None:
            return
        partial = self.checkpoint.with_suffix(".ckpt.partial")
        trainer.save_checkpoint(partial, weights_only=False)  # everything, not the weights alone
        if trainer.is_global_zero:
            durable_replace(partial, self.checkpoint)

    def state_dict(self) -> dict[str, Any]:
        """Saved in the checkpoint, at an epoch's end: what it belongs to, and the random states
        the next epoch starts from (rank 0's are saved; every rank is seeded alike)."""
        return {"fingerprint": self.fingerprint, "run_id": self.tracked_run, "rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Called as the checkpoint is loaded, before the strategy's setup: kept for train start."""
        self.restored_rng = state_dict["rng"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The last hook before the first resumed batch, after the seeding and anything in setup
        that might draw (the data module restores its own shuffle generator)."""
        if self.restored_rng is not None:
            set_rng_states(self.restored_rng)
            self.restored_rng = None


def fingerprint_of(*parts: str) -> str:
    """Of the given parts (config, data hash) and of the package's code: a checkpoint made by
    other code is not resumed."""
    package = Path(__file__).parents[1]
    code = [p.read_bytes() for p in sorted(package.rglob("*.py"))]
    return hashlib.sha256(b"\0".join([*(p.encode() for p in parts), *code])).hexdigest()


def load_state(path: Path, key: str) -> tuple[dict[str, Any], str | None]:
    """The callback state `key` saved in the Lightning checkpoint at `path`, and why the file is
    not a Lightning checkpoint of plain data, in one line (None if it is one).

    `weights_only=True` refuses any object but tensors and plain containers before building it,
    so unpickling cannot run code. torch's messages run to paragraphs of advice; the shortest line
    names the culprit ("Unsupported operand 54", "unsupported GLOBAL posix.system ...").
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # cut short, garbage, objects: torch raises many kinds
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = min(lines, key=len).split(". ")[0][:200] if lines else "empty"
        return {}, f"{type(e).__name__}: {detail}"
    if not isinstance(checkpoint, dict) or not checkpoint.keys() >= LIGHTNING_KEYS:
        return {}, "not a Lightning checkpoint"
    state = checkpoint.get("callbacks", {}).get(key)
    return (state, None) if isinstance(state, dict) else ({}, None)


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
