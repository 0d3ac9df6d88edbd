"""A checkout runs its own code: a second clone sharing the venv (whose editable install points at
this checkout) runs its own code as dvc.yaml runs it, or refuses in one line naming both paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workspace import REPO, clean_env, copy_repo


@pytest.fixture(scope="module")
def second_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("second") / "clone")


def python(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in `root`, with PYTHONPATH only if given: the venv's editable install alone
    points at this checkout."""
    environment = {k: v for k, v in clean_env(**env).items() if k != "PYTHONPATH" or env}
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=environment, capture_output=True, text=True
    )


def test_as_dvc_yaml_runs_it_a_stage_imports_the_workspaces_code(second_clone: Path) -> None:
    found = python(second_clone, "-c", "import mnist_pipeline; print(mnist_pipeline.__file__)")
    assert found.stdout.strip() == str(REPO / "src" / "mnist_pipeline" / "__init__.py")
    found = python(
        second_clone,
        "-c",
        "import mnist_pipeline; print(mnist_pipeline.__file__)",
        PYTHONPATH="src",
    )
    assert found.stdout.strip() == str(second_clone / "src" / "mnist_pipeline" / "__init__.py")
    assert python(second_clone, "-m", "mnist_pipeline.check", PYTHONPATH="src").returncode == 0


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "mnist_pipeline.check"],
        ["-m", "mnist_pipeline.train", "--params", "params.yaml"],  # the stage
        ["-m", "mnist_pipeline.adhoc", "trainer.max_epochs=1"],  # an ad-hoc run
    ],
)
def test_another_checkouts_code_is_refused_naming_both(
    second_clone: Path, command: list[str]
) -> None:
    result = python(second_clone, *command)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert str(second_clone / "src" / "mnist_pipeline") in errors[0]
    assert str(REPO / "src" / "mnist_pipeline") in errors[0]


def test_a_command_runs_with_the_garbage_collector_on() -> None:
    """train and evaluate import with it off; `reported` turns it on for their work."""
    import gc

    from mnist_pipeline.runtime.command import reported

    gc.disable()
    try:
        with reported("train", (), ""):
            assert gc.isenabled()
        assert gc.get_freeze_count() > 0  # what the imports made
        gc.unfreeze()
        with reported("train", (), ""):  # a sweep's next job: its leftovers stay collectable
            assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()  # what `reported` froze: this test process's objects
        gc.enable()
