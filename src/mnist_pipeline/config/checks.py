"""Refuse a bad config or missing data before any run opens or any work starts, naming the key.

Each stage runs its own part (`check_download`, `check_split`, `check_training`) before it
replaces any output; `check_all` (`python -m mnist_pipeline.check`) runs every part and names
every problem at once. This module imports no other module of the package: the download stage
imports it, and should not rerun when the model code changes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# Values that must be positive numbers (the seed: non-negative), per stage: a typo here would
# otherwise surface deep inside a run, or never (`data.attempts=0` tried no mirror at all).
TRAINING = {
    "seed": int,
    "data.batch_size": int,
    "data.eval_batch_size": int,
    "data.yours_weight": int,
    "trainer.max_epochs": int,
    "optimizer.lr": float,
}
DOWNLOAD = {"data.attempts": int, "data.timeout_s": float}
TRAIN_EXAMPLES = 60_000  # MNIST's training set, before the data is known (preprocess refines it)
DUMMY_STEPS = 100  # a schedule is built for this many steps to check its arguments


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


def check_download(cfg: DictConfig) -> None:
    """Fail on retry and timeout settings that could not fetch anything."""
    check_numbers(cfg, DOWNLOAD)


def check_split(cfg: DictConfig, examples: int = TRAIN_EXAMPLES) -> None:
    """`data.val_size` is a whole number of examples leaving some to train on (`abc` or `4999.5`
    would otherwise fail inside numpy's indexing, with a traceback)."""
    value = OmegaConf.select(cfg, "data.val_size")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < examples:
        raise ConfigError(
            f"data.val_size={value!r} must be a whole number of examples between 1 and "
            f"{examples - 1}"
        )


def check_tracking(cfg: DictConfig) -> None:
    """An experiment name MLflow can file the run under (it refuses an empty one mid-start)."""
    name = OmegaConf.select(cfg, "tracking.experiment")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"tracking.experiment={name!r} must be a non-empty name")
    uri = OmegaConf.select(cfg, "tracking.uri")
    if uri is not None and not isinstance(uri, str):
        raise ConfigError(f"tracking.uri={uri!r} must be a URI or null")


def check_model(cfg: DictConfig) -> None:
    """Build the model, its optimizer and its schedule, and run the model on a dummy batch: a
    combination that builds but cannot compute fails here, not in the first step of a run."""
    import torch  # here, not at the top: the download stage checks its settings without torch
    from hydra.utils import instantiate

    with warnings.catch_warnings():  # torch's notes on odd layers ("zero-element tensors")
        warnings.simplefilter("ignore", UserWarning)
        try:
            model = instantiate(cfg.model)
        except Exception as e:  # the networks name their knob (`model.kernel_size=0 must ...`)
            raise ConfigError(named("model", cause(e))) from e
    try:
        with torch.no_grad():
            logits = model(torch.zeros(2, 1, 28, 28))
    except Exception as e:  # torch's own message says what broke, the config says where
        raise ConfigError(f"model: a batch of 28x28 images does not go through it ({e})") from e
    if tuple(logits.shape) != (2, 10):
        raise ConfigError(f"model: gives outputs of shape {tuple(logits.shape)[1:]}, not (10,)")
    try:
        optimizer = instantiate(cfg.optimizer)(model.parameters())
    except Exception as e:  # torch's own checks, e.g. "Invalid momentum value: -1"
        raise ConfigError(f"optimizer: {cause(e)} ({inline(cfg.optimizer)})") from e
    if cfg.get("scheduler") is not None:
        try:
            instantiate(cfg.scheduler)(optimizer, total_steps=DUMMY_STEPS)
        except Exception as e:
            raise ConfigError(f"scheduler: {cause(e)} ({inline(cfg.scheduler)})") from e


def check_trainer(cfg: DictConfig) -> None:
    """Build the Lightning Trainer as `training/build.py` does: it checks every argument, and
    that the accelerator exists (`trainer=gpu` on a machine without one fails here, with
    Lightning's own message)."""
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ProgressBar

    try:
        callbacks = instantiate(cfg.trainer.get("callbacks") or [])
        if not cfg.trainer.get("enable_progress_bar", True):  # the switch wins, as in build
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
        instantiate(cfg.trainer, callbacks=callbacks, logger=False, enable_checkpointing=False)
    except Exception as e:
        raise ConfigError(f"trainer: {cause(e)}") from e


def check_training(cfg: DictConfig, data_dir: Path) -> None:
    """Fail on a bad training config (a wrong type, a value out of range, maps shrunk below 1x1,
    a model that cannot compute, an optimizer or schedule argument torch refuses, a Trainer
    Lightning refuses, no experiment name) or missing processed data."""
    check_numbers(cfg, TRAINING)
    check_tracking(cfg)
    check_model(cfg)
    check_trainer(cfg)
    if not (data_dir / "stats.json").is_file():
        raise FileNotFoundError(f"{data_dir} has no processed data: run `dvc repro preprocess`")


def check_training_numbers(cfg: DictConfig) -> None:
    check_numbers(cfg, TRAINING)


# Each stage's checks, by what they check. Those after "numbers" build objects from the numbers,
# and are left out when a number is already refused (they would only repeat it).
CHECKS: dict[str, Callable[[DictConfig], None]] = {
    "download": check_download,
    "data": check_split,
    "tracking": check_tracking,
    "numbers": check_training_numbers,
    "model": check_model,
    "trainer": check_trainer,
}
BUILT_FROM_NUMBERS = {"model", "trainer"}


def check_all(cfg: DictConfig, checks: dict[str, Callable[[DictConfig], None]] = CHECKS) -> None:
    """Every stage's checks (or those given) on the whole config; one ConfigError naming every
    problem found."""
    problems: dict[str, str] = {}
    for name, check in checks.items():
        if name in BUILT_FROM_NUMBERS and "numbers" in problems:
            continue
        try:
            check(cfg)
        except Exception as e:  # ConfigError, or Hydra's error building the model
            # ours name their key already
            problems[name] = str(e) if isinstance(e, ConfigError) else named(name, cause(e))
    if problems:
        found = "; ".join(p.rstrip(".") for p in problems.values())
        raise ConfigError(
            f"params.yaml is refused: {found}. "
            "Fix the value (`dvc exp run -S key=value`, or conf/ and `make params`) and run again."
        )


def inline(group: DictConfig) -> str:
    """A config group on one line, for a one-paragraph message."""
    return ", ".join(f"{k}={v!r}" for k, v in group.items() if not str(k).startswith("_"))


def named(group: str, text: str) -> str:
    """`text` as said of config group `group`, unless it names its key in the group already."""
    return text if text.startswith(f"{group}.") else f"{group}: {text}"


def cause(e: BaseException) -> str:
    """The error behind Hydra's wrapper, in one line."""
    inner = e.__cause__ or e
    return " ".join(str(inner).split()) or type(inner).__name__
