"""The real pipeline, end to end: `dvc repro` and `dvc exp run` in a temporary copy of the repo.

Synthetic MNIST-shaped data is served over HTTP on 127.0.0.1; DVC, Lightning and MLflow all run
for real, and the MLflow SQLite store is read back afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from synthetic import REPO, checksums, mirror_files

pytestmark = pytest.mark.slow

# Appended to the copy's conf/config.yaml: after `_self_`, so these win over the groups, and
# `dvc exp run -S` composes them too.
TINY = {
    "data": {"val_size": 100, "batch_size": 64},
    "trainer": {"max_epochs": 4, "enable_progress_bar": False},
}


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def pipeline_env(mirror: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        "MNIST_MIRROR": mirror,
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    return env


def copy_repo(dest: Path) -> Path:
    """The project's files as a fresh clone would have them (tracked + new, never ignored ones)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture
def repo(tmp_path: Path, http_mirror: str) -> tuple[Path, dict[str, str]]:
    """A git + DVC repo copied from this one, configured for the synthetic data."""
    root = copy_repo(tmp_path / "repo")
    tiny = TINY | {
        "data": TINY["data"]
        | {"files": {key: {"sha256": digest} for key, digest in checksums(mirror_files()).items()}}
    }
    with open(root / "conf" / "config.yaml", "a") as f:
        f.write("\n# test settings\n" + yaml.safe_dump(tiny))
    env = pipeline_env(http_mirror)
    run([sys.executable, "-m", "mnist_pipeline.config"], root, env)
    run(["git", "init", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "baseline"], root, env)
    return root, env


def runs_in_store(root: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist")
    assert experiment is not None, "experiment 'mnist' missing from the store"
    return client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


def test_repro_runs_all_stages_and_tracks_one_run(repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    run(["dvc", "repro"], root, env)

    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    assert metrics["test"]["acc"] >= 0.9, metrics
    for out in ("data/raw", "data/processed", "models/model.pt", "reports/confusion.png"):
        assert (root / out).exists(), out
    confusion = (root / "reports" / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 1 + 200

    (run_,) = runs_in_store(root)
    assert run_.info.status == "FINISHED"
    assert run_.info.run_id == json.loads((root / "models/mlflow_run.json").read_text())["run_id"]
    assert run_.data.params["optimizer.lr"] == "0.003"
    assert run_.data.params["model._target_"] == "mnist_pipeline.models.ConvNet"
    assert run_.data.metrics["test_acc"] == pytest.approx(metrics["test"]["acc"])
    assert {
        "test_loss",
        "test_f1_3",
        "train_loss",
        "val_loss",
        "val_acc",
    } <= run_.data.metrics.keys()
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    for name in ("train_loss", "val_loss", "val_acc"):  # one point per epoch, stepped by epoch
        history = client.get_metric_history(run_.info.run_id, name)
        assert [m.step for m in history] == [0, 1, 2, 3], name
    artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
    assert {"config.yaml", "confusion.png", "metrics.json"} <= artifacts
    (model,) = client.search_logged_models([run_.info.experiment_id])
    assert model.source_run_id == run_.info.run_id

    again = run(["dvc", "repro"], root, env)
    assert "Data and pipelines are up to date." in again.stdout
    assert len(runs_in_store(root)) == 1


def test_exp_run_with_override_reruns_only_train_and_evaluate(
    repo: tuple[Path, dict[str, str]],
) -> None:
    root, env = repo
    run(["dvc", "repro"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "pipeline ran"], root, env)

    result = run(["dvc", "exp", "run", "-S", "optimizer.lr=0.002"], root, env)
    assert "Stage 'download' didn't change, skipping" in result.stdout
    assert "Stage 'preprocess' didn't change, skipping" in result.stdout
    assert "Running stage 'train'" in result.stdout
    assert "Running stage 'evaluate'" in result.stdout

    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env).stdout)
    experiments = [exp for rev in shown for exp in (rev.get("experiments") or [])]
    assert experiments, shown
    data = experiments[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["optimizer"]["lr"] == 0.002
    assert data["metrics"]["reports/metrics.json"]["data"]["test"]["acc"] >= 0.9

    latest = runs_in_store(root)[-1]
    assert latest.data.params["optimizer.lr"] == "0.002"
    assert latest.info.run_name == experiments[0]["revs"][0]["name"]
