"""A group of users correcting the model: does it learn handwriting MNIST lacks from their digits?

The UCI pen-based digits' *training* writers (30 people, benchmarks/handwriting/, none of them
among the 14 test writers) stand in for the users: their digits are replayed on a canvas as the
drawn test set is, and added to `data/yours/` through `predict --label`, in a scratch clone of
this repository. After 0, 100, 500 and 2,000 added digits, `dvc repro` retrains, and the model is
measured on the 14 test writers' drawn digits, on Semeion's scans and on MNIST test. The test
writers' pictures never enter `data/yours/`: checked by content hash.

    MNIST_MIRROR=file:///path/to/mnist python benchmarks/yours.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import handwriting
import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN_FILE = handwriting.HERE / "pendigits-orig-train-subset.tra.gz"
STEPS = (0, 100, 500, 2000)


def render(out: Path) -> list[tuple[Path, int]]:
    """Every training writer's digit as a canvas drawing, in a shuffled, fixed order."""
    rng = np.random.default_rng(25)
    out.mkdir(parents=True)
    files = []
    for i, (strokes, label) in enumerate(handwriting.pendigits(TRAIN_FILE.name)):
        path = out / f"{label}-train-{i:04d}.png"
        handwriting.drawing(strokes, rng, i % 3).save(path)
        files.append((path, label))
    order = np.random.default_rng(26).permutation(len(files))
    return [files[i] for i in order]


def add(clone: Path, files: list[tuple[Path, int]]) -> None:
    for digit in range(10):
        mine = [str(path) for path, label in files if label == digit]
        if mine:
            label = ["-m", "mnist_pipeline.predict", "-q", "--label", str(digit)]
            run([sys.executable, *label, *mine], clone)


def run(command: list[str], cwd: Path) -> str:
    """In `cwd`, with its own code (`PYTHONPATH=src`, as the stages)."""
    env = os.environ | {"PYTHONPATH": "src"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:6])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def content_hashes(folder: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in folder.rglob("*.png")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    args = parser.parse_args()
    images = handwriting.HERE / "images"
    handwriting.render(images)
    scratch = Path(tempfile.mkdtemp(prefix="yours-"))
    clone = scratch / "repo"
    run(["git", "clone", "-q", str(REPO), str(clone)], scratch)
    files = render(scratch / "users")
    test_writers = content_hashes(images / "drawn")
    added, rows = 0, []
    for step in map(int, args.steps.split(",")):
        add(clone, files[added:step])
        added = step
        yours = {p.name.split(".")[0] for p in (clone / "data/yours").rglob("*") if p.is_file()}
        assert not yours & test_writers, "a test writer's picture is in data/yours/"
        run(["dvc", "repro"], clone)
        model = str(clone / "models/model.pt")
        metrics = json.loads((clone / "reports/metrics.json").read_text())
        drawn = handwriting.evaluate(images / "drawn", model)
        scans = handwriting.evaluate(images / "scans", model)
        row = {
            "added": step,
            "drawn": drawn["accuracy"],
            "scans": scans["accuracy"],
            "mnist_test": metrics["test"]["acc"],
            "yours_heldout": metrics.get("yours", {}).get("acc"),
        }
        rows.append(row)
        held = metrics.get("yours", {}).get("digits", 0)
        print(
            f"{step:5d} added: drawn {row['drawn']:.2%}, scans {row['scans']:.2%}, MNIST test "
            f"{row['mnist_test']:.2%}, your held-out digits "
            + (f"{row['yours_heldout']:.2%} of {held}" if held else "none"),
            flush=True,
        )
    print(f"targets: drawn at least 98% with at most 2,000 added, MNIST test at least 99.2% "
          f"(scratch clone: {clone})")  # fmt: skip


if __name__ == "__main__":
    main()
