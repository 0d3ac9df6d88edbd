"""Ad-hoc Hydra runs and sweeps over conf/, started as `python -m mnist_pipeline.adhoc key=value`.

Each run (or sweep point) trains, evaluates on the test set and tracks to MLflow like the
pipeline, but writes into its own Hydra output folder, never into the DVC-tracked models/ and
reports/. A sweep (`-m`) is one MLflow parent run with a child run per point (`tracking/sweep.py`),
on any Hydra launcher (jobs in this process, joblib workers, submitit jobs on this machine or a
SLURM cluster: conf/hydra/launcher/) and sweeper (a grid, or Optuna: conf/hydra/sweeper/).
"""

from __future__ import annotations

import csv
import secrets
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mnist_pipeline import evaluate as evaluation
from mnist_pipeline import train as training
from mnist_pipeline.config.checks import check_training
from mnist_pipeline.config.params import CONF_DIR
from mnist_pipeline.runtime.command import reported
from mnist_pipeline.runtime.privacy import keep_private
from mnist_pipeline.tracking.sweep import OBJECTIVE
from mnist_pipeline.utils.paths import PROCESSED_DIR, Outputs

# Output folders end in a random suffix: two runs started in the same second stay apart.
OmegaConf.register_new_resolver("uniq", lambda: secrets.token_hex(3), use_cache=True, replace=True)


@hydra.main(config_path=str(CONF_DIR.resolve()), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Train, then evaluate; returns what a sweeper optimizes (`sweep.OBJECTIVE`, the saved
    model's validation accuracy), or None on DDP's extra processes, where rank 0 alone
    evaluates. A failure the stages report in one paragraph is reported here the same way."""
    with reported("train", EXPECTED, "Start the run again."):
        out = Outputs.under(Path(HydraConfig.get().runtime.output_dir))
        check_training(cfg, PROCESSED_DIR)
        if not training.train(cfg, out):
            return None
        evaluation.evaluate(cfg, out)
        return objective(out)


EXPECTED = (*training.EXPECTED, *evaluation.EXPECTED)


def objective(out: Outputs) -> float:
    """The last epoch's OBJECTIVE from the curves train saved: the value MLflow holds for it."""
    with open(out.reports / "training.csv", newline="") as f:
        return float(list(csv.DictReader(f))[-1][OBJECTIVE])


if __name__ == "__main__":
    keep_private()  # before a sweep's parent run, which Hydra opens before any job is `reported`
    with reported("train", EXPECTED, "Start the run again."):  # a SIGTERM while Hydra starts too
        main()
