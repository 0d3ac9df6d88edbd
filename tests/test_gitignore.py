"""What the pipeline and its tools leave in the work tree is ignored by git, nothing more."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from workspace import REPO

LEFT_BY_TOOLS = [
    "dvc_plots/index.html",  # `dvc plots show`
    "mlflow.db-journal",  # SQLite's rollback journal, while a run writes
    "mlflow.db",
    "mlruns/1/abc/artifacts/model.pt",
    ".checkpoints/train/last.ckpt",
]
KEPT = [".dvc/plots/vega.min.js", "dvc.lock", "reports/metrics.json", "conf/config.yaml"]


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


@pytest.mark.parametrize("path", LEFT_BY_TOOLS)
def test_what_tools_leave_behind_is_ignored(copy: Path, path: str) -> None:
    result = subprocess.run(["git", "check-ignore", "-q", path], cwd=copy)
    assert result.returncode == 0, f"{path} is not git-ignored"


@pytest.mark.parametrize("path", KEPT)
def test_the_projects_files_are_not_ignored(copy: Path, path: str) -> None:
    assert subprocess.run(["git", "check-ignore", "-q", path], cwd=copy).returncode == 1
