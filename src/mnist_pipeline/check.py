"""DVC stage `check`: the whole config, checked before any stage that writes.

DVC deletes a stage's outputs before running it, so a bad value found by `train` itself would
already have cost the last good model and curves (and `data.val_size=0`, found by `preprocess`,
the processed data). This stage depends on every param and runs first: `download` depends on its
output. The output is one constant line, so a params change that passes the checks leaves
`download` and `preprocess` skipped, as before. Under `dvc exp run` it also refuses a baseline
whose params.yaml held hand edits that the experiment, composed from conf/, would drop.
"""

from __future__ import annotations

from pathlib import Path

from hydra.errors import InstantiationException

from mnist_pipeline.atomic import write_text
from mnist_pipeline.cli import run_stage
from mnist_pipeline.config import load_params
from mnist_pipeline.params_guard import check_baseline
from mnist_pipeline.preflight import ConfigError, check_all

CHECKED = Path("data/checked.txt")  # the stage's output: constant, so downstream is not rerun


def main() -> None:
    check_baseline()  # first: it needs no torch nor Lightning
    check_all(load_params())
    write_text(CHECKED, "params.yaml passed every stage's checks\n")


if __name__ == "__main__":
    run_stage(main, ConfigError, InstantiationException, FileNotFoundError)
