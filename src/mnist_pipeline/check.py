"""DVC stage `check`: the whole config, checked before any stage that writes.

DVC deletes a stage's outputs before running it, so a bad value found by `train` itself would
already have cost the last good model and curves (and `data.val_size=0`, found by `preprocess`,
the processed data). This stage depends on every param and runs first: `download` depends on its
output. The output is one constant line, so a params change that passes the checks leaves
`download` and `preprocess` skipped, as before. Under `dvc exp run` it also refuses a baseline
whose params.yaml held hand edits that the experiment, composed from conf/, would drop.

    python -m mnist_pipeline.check            # every param but the Trainer's (stage `check`)
    python -m mnist_pipeline.check --trainer  # the Trainer, built (stage `check-trainer`)

Two stages, because building the Trainer means importing Lightning (about 4 s): DVC reruns
`check-trainer` only when the `trainer` params change, so an experiment on the model or the
optimizer does not pay for it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.errors import InstantiationException

from mnist_pipeline.atomic import write_text
from mnist_pipeline.cli import run_stage
from mnist_pipeline.config import load_params
from mnist_pipeline.params_guard import check_baseline
from mnist_pipeline.preflight import CHECKS, ConfigError, check_all

# The stages' outputs: constant, so downstream is not rerun when params pass.
CHECKED = Path("data/checked.txt")
CHECKED_TRAINER = Path("data/checked-trainer.txt")


def main() -> None:
    if "--trainer" in sys.argv[1:]:
        check_all(load_params(), {"trainer": CHECKS["trainer"]})
        write_text(CHECKED_TRAINER, "params.yaml's trainer builds\n")
        return
    check_baseline()  # first: it needs no torch nor Lightning
    check_all(load_params(), {k: v for k, v in CHECKS.items() if k != "trainer"})
    write_text(CHECKED, "params.yaml passed every stage's checks but the trainer's\n")


if __name__ == "__main__":
    run_stage(main, ConfigError, InstantiationException, FileNotFoundError)
