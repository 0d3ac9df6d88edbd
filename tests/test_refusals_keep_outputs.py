"""Under the real `dvc exp run` and `dvc repro`, whatever a stage refuses costs no output: DVC
leaves every output in place (`persist` in dvc.yaml) and the stage checks before it writes.

One repo for the module: download and preprocess really run; train's and evaluate's outputs are
stand-ins committed with `dvc commit` (what matters is that no refusing stage touches them)."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from pipeline_repo import Repo, make_repo, run
from servers import free_port
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
    root, env = make_repo(tmp_path_factory.mktemp("refusals"), http_mirror)
    run(["dvc", "repro", "preprocess"], root, env)
    for name in TRAINED:
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_text(f"{name} as the last good run left it\n")
    run(["dvc", "commit", "-f"], root, env)
    commit(root, env, "pipeline ran")
    return root, env


@pytest.fixture
def kept(reproduced: Repo) -> Iterator[Repo]:
    """The repo; afterwards, every output byte for byte as it was, and params.yaml put back."""
    root, _ = reproduced
    before = {name: (root / name).read_bytes() for name in KEPT}
    yield reproduced
    assert {name: (root / name).read_bytes() for name in KEPT} == before
    git(root, "checkout", "--", "params.yaml")


def dvc(root: Path, env: dict[str, str], *args: str) -> str:
    """A `dvc` command that must fail; its output, which must hold no traceback."""
    result = subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    return output


def exp_run(root: Path, env: dict[str, str], *overrides: str) -> str:
    return dvc(root, env, "exp", "run", *[arg for o in overrides for arg in ("-S", o)])


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout


def test_a_bad_data_value_is_refused_by_preprocess(kept: Repo) -> None:
    root, env = kept
    output = exp_run(root, env, "data.val_size=0")
    assert "data.val_size=0 must be a whole number" in output
    assert "Running stage 'train'" not in output
    # What the failed experiment leaves in git: params.yaml rewritten (DVC's doing), and the
    # index in step with the workspace (`git status` shows the change, hides nothing).
    assert git(root, "status", "--porcelain").split() == ["M", "params.yaml"]
    assert git(root, "diff", "--cached", "--name-only") == ""


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=0", "trainer.max_epochs=0 must be a positive int"),
        ("model.kernel_size=0", "model.kernel_size=0 must be a whole number of pixels"),
        ("trainer.accelerator=tpu", "trainer: "),  # Lightning's own refusal, no check stage
    ],
)
def test_a_bad_training_value_is_refused_by_train(kept: Repo, override: str, message: str) -> None:
    root, env = kept
    output = exp_run(root, env, override)
    assert "Running stage 'train'" in output and message in output


def test_a_tracking_server_that_is_down(kept: Repo) -> None:
    root, env = kept
    output = exp_run(root, env, f"tracking.uri=http://127.0.0.1:{free_port()}")
    assert "is not answering" in output and "Nothing was trained" in output


def test_a_store_whose_artifacts_are_in_the_old_place(kept: Repo) -> None:
    """The repository was copied or moved: its experiment's artifacts are recorded elsewhere."""
    root, env = kept
    store = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    store.create_experiment("mnist", (root.parent / "old-place" / "mlruns").as_uri())
    try:
        output = exp_run(root, env, "seed=7")
        assert "was moved or copied" in output and "old-place" in output
    finally:
        (root / "mlflow.db").unlink()


def test_a_store_locked_by_another_process(kept: Repo, tmp_path: Path) -> None:
    root, env = kept
    mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_experiments()  # made
    holder = sqlite3.connect(root / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        output = exp_run(root, env, "seed=8")
        assert "database is locked" in output
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        (root / "mlflow.db").unlink()


def test_evaluate_refuses_a_model_it_cannot_read(kept: Repo) -> None:
    root, env = kept
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("eval_batch_size: 1000", "eval_batch_size: 999"))
    output = dvc(root, env, "repro", "--single-item", "evaluate")
    assert "Running stage 'evaluate'" in output and "error: " in output


def test_exp_run_refuses_a_baseline_with_hand_edits(reproduced: Repo) -> None:
    root, env = reproduced
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("  lr: 0.003\n", "  lr: 0.05\n"))
    commit(root, env, "hand edit")
    try:
        output = exp_run(root, env, "seed=1")
        assert "optimizer.lr is 0.05 there, conf/ gives 0.003" in output, output
    finally:
        git(root, "reset", "-q", "--hard", "HEAD~1")
