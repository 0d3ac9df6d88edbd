"""Ad-hoc runs and sweeps (`python -m mnist_pipeline.adhoc key=value`, `-m`) end as the stages do:
for every error the stage reports, the same one paragraph, exit status and masking, and no
traceback (Hydra's own report would print the chained exceptions, credentials and all)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from servers import free_port
from stores import fresh_store
from synthetic import write_processed
from workspace import clean_env, copy_repo

pytestmark = pytest.mark.slow

TINY = {"data": {"batch_size": 64}, "trainer": {"max_epochs": 1, "enable_progress_bar": False}}
SECRET = "s3cret-pw"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_repo(tmp_path_factory.mktemp("adhoc") / "repo")
    with open(root / "conf" / "config.yaml", "a") as f:
        f.write("\n# test settings\n" + yaml.safe_dump(TINY))
    write_processed(root / "data" / "processed", n_train=512)
    fresh_store(tmp_path_factory, root)
    return root


def train(root: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_pipeline.adhoc", *args],
        cwd=root,
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_paragraph(proc: subprocess.Popen[str], code: int, message: str) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err, err[-3000:]
    assert SECRET not in out + err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], err[-3000:]
    return errors[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # ConfigError, naming the knob and what it takes
        (["model.kernel_size=0"], "model.kernel_size=0 must be a whole number of pixels"),
        (["trainer.max_epochs=0"], "trainer.max_epochs=0 must be a positive int"),
        # FloatingPointError
        (["optimizer.lr=1e12", "scheduler=none"], "the model diverged. Lower optimizer.lr"),
    ],
    ids=["config", "epochs", "diverged"],
)
def test_a_bad_value(repo: Path, args: list[str], message: str) -> None:
    one_paragraph(train(repo, *args), 1, message)


def test_missing_processed_data(repo: Path, tmp_path: Path) -> None:
    (repo / "data" / "processed").rename(tmp_path / "processed")
    try:
        one_paragraph(train(repo), 1, "has no processed data: run `dvc repro preprocess`")
    finally:
        (tmp_path / "processed").rename(repo / "data" / "processed")


def test_a_damaged_split(repo: Path, tmp_path: Path) -> None:
    val = repo / "data" / "processed" / "val.npz"
    (tmp_path / "val.npz").write_bytes(val.read_bytes())
    val.write_bytes(b"not an archive")
    try:
        one_paragraph(train(repo), 1, "val.npz is not a processed split")
    finally:
        val.write_bytes((tmp_path / "val.npz").read_bytes())


def test_a_tracking_server_down_masks_the_password(repo: Path) -> None:
    uri = f"http://alice:{SECRET}@127.0.0.1:{free_port()}"
    line = one_paragraph(train(repo, MLFLOW_TRACKING_URI=uri), 1, "is not answering")
    assert "http://***@127.0.0.1" in line


def test_sigterm_is_one_line_and_143(repo: Path) -> None:
    before = set(repo.glob("outputs/*/*/.hydra"))
    proc = train(repo, "model=mlp", "trainer.max_epochs=1000")
    deadline = time.monotonic() + 120
    while set(repo.glob("outputs/*/*/.hydra")) == before and time.monotonic() < deadline:
        time.sleep(0.2)  # Hydra writes this run's as it hands over to the run
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    one_paragraph(proc, 143, "train interrupted (SIGTERM)")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["-m", "model.kernel_size=5,0"], {}, "model.kernel_size=0 must be a whole number"),
        (
            ["-m", "optimizer.lr=0.001,0.01"],
            {"MLFLOW_TRACKING_URI": f"http://alice:{SECRET}@127.0.0.1:{free_port()}"},
            "http://***@127.0.0.1",
        ),
    ],
    ids=["bad-point", "server-down"],
)
def test_a_sweep(repo: Path, args: list[str], env: dict[str, str], message: str) -> None:
    one_paragraph(train(repo, *args, **env), 1, message)
