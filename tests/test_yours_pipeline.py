"""Your own digits through the real pipeline (`dvc repro` in a temporary repo, tiny synthetic
data): added with `predict --label`, trained on, scored apart, and gone without a trace."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from pipeline_repo import client_for, make_repo, run, runs_in_store
from synthetic import synthetic_digits

pytestmark = pytest.mark.slow


def test_your_digits_join_training_are_held_out_by_hash_and_leave_no_trace(
    tmp_path: Path, http_mirror: str
) -> None:
    root, env = make_repo(tmp_path / "repo", http_mirror)
    run(["dvc", "repro"], root, env)
    without = (root / "models/model.pt").read_bytes()
    assert "yours" not in json.loads((root / "reports/metrics.json").read_text())
    assert not list((root / "data/processed").glob("yours*"))

    images, labels = synthetic_digits(40, seed=5)
    mine = tmp_path / "mine"
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (mine / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).resize((112, 112)).save(mine / str(label) / f"{i}.png")
    for digit in range(10):
        predict = [sys.executable, "-m", "mnist_pipeline.predict", "--label", str(digit)]
        run([*predict, str(mine / str(digit))], root, env)
    assert len(list((root / "data/yours").rglob("*.28x28.png"))) == 40

    run(["dvc", "repro"], root, env)
    metrics = json.loads((root / "reports/metrics.json").read_text())
    held_out = (root / "data/processed/yours_heldout.npz").read_bytes()
    assert 1 <= metrics["yours"]["digits"] < 40 and 0 <= metrics["yours"]["acc"] <= 1
    assert (root / "models/model.pt").read_bytes() != without
    latest = runs_in_store(client_for(root))[-1]
    assert latest.data.metrics["yours_acc"] == pytest.approx(metrics["yours"]["acc"])
    (recorded,) = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["yours"]["outs"]
    assert recorded["path"] == "data/yours" and recorded["nfiles"] == 80  # cached: `dvc push`es

    run(["dvc", "repro", "-f", "preprocess"], root, env)  # the same digits, the same split
    assert (root / "data/processed/yours_heldout.npz").read_bytes() == held_out

    shutil.rmtree(root / "data/yours")
    (root / "data/yours").mkdir()
    run(["dvc", "repro"], root, env)
    assert (root / "models/model.pt").read_bytes() == without
    assert not list((root / "data/processed").glob("yours*"))
    assert "yours" not in json.loads((root / "reports/metrics.json").read_text())
