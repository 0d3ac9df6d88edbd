"""Throwaway copies of this repository, for the pipeline tests and the fault-injection run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without MLflow/DVC settings or MNIST_MIRROR: the venv first on PATH,
    analytics and telemetry off, a git identity for commits, and `PYTHONPATH=src`: a command run
    in a copy of the repo runs the copy's code, as dvc.yaml's stages do (the venv's editable
    install points at this checkout, which runtime.workspace.check_workspace_code refuses there)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "DVC_")) and k != "MNIST_MIRROR"
    }
    return env | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": "src",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        **extra,
    }


def copy_repo(dest: Path) -> Path:
    """The project's files as a clone of the work tree would have them (tracked and new files,
    never ignored ones), in a fresh git repo with nothing committed yet."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def commit(root: Path, env: dict[str, str], message: str) -> None:
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", message]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
