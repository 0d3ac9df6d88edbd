"""Throwaway git + DVC repos set up for the synthetic mirror, the commands the pipeline tests run
in them, and the MLflow store they read back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import mlflow
import yaml

from synthetic import checksums, mirror_files
from workspace import clean_env, commit, copy_repo

# Appended to the copy's conf/config.yaml: after `_self_`, so these win over the groups, and
# `dvc exp run -S` composes them too.
TINY = {
    "data": {
        "val_size": 100,
        "batch_size": 64,
        "files": {key: {"sha256": digest} for key, digest in checksums(mirror_files()).items()},
    },
    "trainer": {"max_epochs": 4, "enable_progress_bar": False},
}
Repo = tuple[Path, dict[str, str]]


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=540)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def outs(root: Path, stage: str) -> dict[str, str]:
    """A stage's outputs and their hashes, as dvc.lock records them."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for out in lock["stages"][stage]["outs"]}


def make_repo(dest: Path, mirror: str) -> Repo:
    """A git + DVC repo with the project's files as a clone has them, set up for synthetic data."""
    copy_repo(dest)
    with open(dest / "conf" / "config.yaml", "a") as f:
        f.write("\n# test settings\n" + yaml.safe_dump(TINY))
    env = clean_env(MNIST_MIRROR=mirror)
    run([sys.executable, "-m", "mnist_pipeline.config"], dest, env)
    commit(dest, env, "baseline")
    return dest, env


def client_for(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def runs_in_store(client: mlflow.MlflowClient) -> list[mlflow.entities.Run]:
    experiment = client.get_experiment_by_name("mnist")
    assert experiment is not None, "experiment 'mnist' missing from the store"
    return client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


def run_queue(root: Path, env: dict[str, str], seconds: float) -> str:
    """`dvc queue start -j 2`, then `dvc queue status` once nothing is queued or running (or
    `seconds` have passed)."""
    run(["dvc", "queue", "start", "-j", "2"], root, env)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], root, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    return status
