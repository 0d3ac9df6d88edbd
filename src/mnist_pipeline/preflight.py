"""Refuse a bad config or missing data before any run opens or any work starts, naming the key."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mnist_pipeline.config import to_yaml

# Values that must be positive numbers: a typo here would otherwise surface deep inside a run.
POSITIVE = {
    "seed": int,
    "data.batch_size": int,
    "data.eval_batch_size": int,
    "trainer.max_epochs": int,
    "optimizer.lr": float,
}


class ConfigError(ValueError):
    """A config value is of the wrong type or out of range; the message names the key."""


def check_numbers(cfg: DictConfig) -> None:
    """Each value in POSITIVE is a number of its kind, and positive (the seed: non-negative)."""
    for key, kind in POSITIVE.items():
        value = OmegaConf.select(cfg, key)
        number = isinstance(value, kind | int) and not isinstance(value, bool)
        if not number or not (value >= 0 if key == "seed" else value > 0):
            raise ConfigError(
                f"{key}={value!r} must be a {'non-negative' if key == 'seed' else 'positive'} "
                f"{kind.__name__}"
            )


def check_training(cfg: DictConfig, data_dir: Path) -> None:
    """Fail on a bad training config (a wrong type, a value out of range, maps shrunk below 1x1,
    an optimizer argument torch refuses) or missing processed data."""
    check_numbers(cfg)
    instantiate(cfg.model)
    try:
        instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    except ValueError as e:  # torch's own checks, e.g. "Invalid momentum value: -1"
        raise ConfigError(f"optimizer: {e} ({to_yaml(cfg.optimizer).strip()})") from e
    if not (data_dir / "stats.json").is_file():
        raise FileNotFoundError(f"{data_dir} has no processed data: run `dvc repro preprocess`")
