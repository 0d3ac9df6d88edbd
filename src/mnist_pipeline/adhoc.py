"""Ad-hoc Hydra runs and sweeps over conf/, started as `python -m mnist_pipeline.train key=value`.

Each run (or sweep point) trains, evaluates on the test set and tracks to MLflow like the
pipeline, but writes into its own Hydra output folder, never into the DVC-tracked models/ and
reports/. A sweep (`-m`) is one MLflow parent run with a child run per point (`tracking/sweep.py`).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mnist_pipeline.config import CONF_DIR
from mnist_pipeline.evaluate import evaluate
from mnist_pipeline.paths import PROCESSED_DIR, Outputs
from mnist_pipeline.preflight import check_training
from mnist_pipeline.train import train

# Output folders end in a random suffix: two runs started in the same second stay apart.
OmegaConf.register_new_resolver("uniq", lambda: secrets.token_hex(3), use_cache=True, replace=True)


@hydra.main(config_path=str(CONF_DIR.resolve()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Train, then evaluate; returns the test accuracy (what a sweeper optimizes), or None on
    DDP's extra processes, where rank 0 alone evaluates."""
    out = Outputs.under(Path(HydraConfig.get().runtime.output_dir))
    check_training(cfg, PROCESSED_DIR)
    return evaluate(cfg, out) if train(cfg, out) else None


if __name__ == "__main__":
    main()
