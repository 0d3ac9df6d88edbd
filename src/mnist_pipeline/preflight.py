"""Refuse a bad config or missing data before any run opens or any work starts, naming the key."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mnist_pipeline.config import to_yaml

# Values that must be positive numbers (the seed: non-negative), per stage: a typo here would
# otherwise surface deep inside a run, or never (`data.attempts=0` tried no mirror at all).
TRAINING = {
    "seed": int,
    "data.batch_size": int,
    "data.eval_batch_size": int,
    "trainer.max_epochs": int,
    "optimizer.lr": float,
}
DOWNLOAD = {"data.attempts": int, "data.timeout_s": float}


class ConfigError(ValueError):
    """A config value is of the wrong type or out of range; the message names the key."""


def check_numbers(cfg: DictConfig, kinds: dict[str, type]) -> None:
    """Each of these values is a number of its kind, and positive (the seed: non-negative)."""
    for key, kind in kinds.items():
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
    import torch  # here, not at the top: the download stage checks its settings without torch
    from hydra.utils import instantiate

    check_numbers(cfg, TRAINING)
    instantiate(cfg.model)
    try:
        instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    except ValueError as e:  # torch's own checks, e.g. "Invalid momentum value: -1"
        raise ConfigError(f"optimizer: {e} ({to_yaml(cfg.optimizer).strip()})") from e
    if not (data_dir / "stats.json").is_file():
        raise FileNotFoundError(f"{data_dir} has no processed data: run `dvc repro preprocess`")


def check_download(cfg: DictConfig) -> None:
    """Fail on retry and timeout settings that could not fetch anything."""
    check_numbers(cfg, DOWNLOAD)
