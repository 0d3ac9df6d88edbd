"""`python -m mnist_pipeline.check`: every stage's checks on params.yaml, without running any.

Each stage checks the params it reads before it replaces any output (and DVC leaves the last good
ones in place until then: `persist` in dvc.yaml), so nothing depends on this command. It names
every problem at once, in seconds, where `dvc repro` would stop at the first stage that reads a
bad value, after the stages before it ran.
"""

from __future__ import annotations

from hydra.errors import InstantiationException

from mnist_pipeline.config.checks import ConfigError, check_all
from mnist_pipeline.config.params import load_params
from mnist_pipeline.runtime.command import run_stage


def main() -> None:
    check_all(load_params())
    print("params.yaml passes every stage's checks")


if __name__ == "__main__":
    run_stage(main, ConfigError, InstantiationException, FileNotFoundError)
