"""The `check` stage under the real `dvc exp run`: a bad value is refused before DVC deletes any
output, and a baseline with hand-edited params.yaml is refused before the experiment drops them.
One repo for the module: check, download and preprocess really run; train's and evaluate's
outputs are stand-ins committed with `dvc commit` (what matters is that no stage touches them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipeline_repo import Repo, make_repo, run
from workspace import commit

pytestmark = pytest.mark.slow

TRAINED = [
    "models/model.pt",
    "models/mlflow_run.json",
    "reports/training.png",
    "reports/training.csv",
    "reports/metrics.json",
    "reports/per_class.json",
    "reports/confusion.csv",
    "reports/confusion.png",
    "reports/mistakes.png",
    "reports/features.png",
]
KEPT = [*TRAINED, "data/processed/train.npz", "data/processed/stats.json"]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory, http_mirror: str) -> Repo:
    root, env = make_repo(tmp_path_factory.mktemp("checked"), http_mirror)
    run(["dvc", "repro", "preprocess"], root, env)
    for name in TRAINED:
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text(f"{name} as the last good run left it\n")
    run(["dvc", "commit", "-f"], root, env)
    commit(root, env, "pipeline ran")
    return root, env


def exp_run(root: Path, env: dict[str, str], *overrides: str) -> subprocess.CompletedProcess[str]:
    args = [arg for override in overrides for arg in ("-S", override)]
    return subprocess.run(
        ["dvc", "exp", "run", *args], cwd=root, env=env, capture_output=True, text=True
    )


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout


def test_a_bad_value_under_exp_run_keeps_every_output(reproduced: Repo) -> None:
    root, env = reproduced
    before = {name: (root / name).read_bytes() for name in KEPT}
    result = exp_run(root, env, "trainer.max_epochs=0", "data.val_size=0")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Running stage 'check'" in output and "Running stage 'train'" not in output
    assert "trainer.max_epochs=0 must be a positive int" in output
    assert "data.val_size=0 must be a whole number" in output
    assert "Traceback" not in output
    assert {name: (root / name).read_bytes() for name in KEPT} == before

    # What the failed experiment leaves in git: params.yaml rewritten (DVC's doing), and the
    # index in step with the workspace (`git status` shows the change, hides nothing).
    assert git(root, "status", "--porcelain").split() == ["M", "params.yaml"]
    assert git(root, "diff", "--cached", "--name-only") == ""
    git(root, "checkout", "--", "params.yaml")


def test_exp_run_refuses_a_baseline_with_hand_edits(reproduced: Repo) -> None:
    root, env = reproduced
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("  lr: 0.003\n", "  lr: 0.05\n"))
    commit(root, env, "hand edit")
    try:
        result = exp_run(root, env, "seed=1")
        assert result.returncode != 0
        output = result.stdout + result.stderr
        assert "optimizer.lr is 0.05 there, conf/ gives 0.003" in output, output
        assert "Running stage 'train'" not in output
    finally:
        git(root, "reset", "-q", "--hard", "HEAD~1")
