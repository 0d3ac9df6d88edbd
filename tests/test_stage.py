"""The stage launcher and its warm worker: a stage run by a fork of the worker writes what a fresh
process writes, fails and stops the same way, and never outlives its caller."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnist_pipeline.config import compose, to_yaml
from mnist_pipeline.warm import client
from stores import fresh_store
from synthetic import write_processed
from workspace import REPO, clean_env

STAGE = [sys.executable, "-m", "mnist_pipeline.stage"]
TRAIN = [*STAGE, "train", "--params", "params.yaml"]


def test_a_bad_setting_is_one_clear_line() -> None:
    env = clean_env(MNIST_PIPELINE_WARM="soon")
    result = subprocess.run([*STAGE, "check"], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("error: MNIST_PIPELINE_WARM='soon': give 0")
    assert "Traceback" not in result.stderr


def test_no_worker_behind_a_folder_others_can_open_or_too_deep(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path_factory.mktemp("run")  # a short path: a socket's is at most 107 bytes
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    assert client.socket_path().parent.stat().st_mode & 0o777 == 0o700
    client.socket_path().parent.chmod(0o755)
    assert client.socket_path() is None
    deep = run / ("deep" * 20)
    deep.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    assert client.socket_path() is None  # the stage runs in its own process


def test_the_worker_key_follows_import_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage with other threads or another interpreter flag never gets a worker that imported
    torch under different settings; a setting read at run time (the tracking URI) shares it."""
    before = client.socket_path()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert client.socket_path() == before
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert client.socket_path() != before


@pytest.fixture
def workspace(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A folder the train stage can run in: tiny data, a long mlp training, an MLflow store."""
    write_processed(tmp_path / "data" / "processed")
    overrides = ["model=mlp", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
                 "data.batch_size=64"]  # fmt: skip
    (tmp_path / "params.yaml").write_text(to_yaml(compose(overrides, conf_dir=REPO / "conf")))
    shutil.copy(fresh_store(tmp_path_factory, tmp_path_factory.mktemp("store")), tmp_path)
    shutil.copytree(REPO / "conf", tmp_path / "conf")  # the run's tags read the config groups
    return tmp_path


@pytest.fixture
def warm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """The environment of a stage with a worker of its own up and waiting, and the worker's log."""
    run = tmp_path_factory.mktemp("run")
    env = clean_env(XDG_RUNTIME_DIR=str(run), MNIST_PIPELINE_WARM="120")
    command = [sys.executable, "-m", "mnist_pipeline.warm.worker", "120"]
    with open(run / "worker.log", "w") as log:
        worker = subprocess.Popen(command, env=env, stdout=log)
    deadline = time.monotonic() + 120
    while not list(run.glob("*/*.sock")) and worker.poll() is None:
        assert time.monotonic() < deadline, "the worker never came up"
        time.sleep(0.2)
    yield env, run / "worker.log"
    worker.terminate()
    worker.wait()


def served(log: Path) -> list[tuple[str, int]]:
    """(module, pid) of each stage the worker ran, from its log."""
    found = re.findall(r": (mnist_pipeline\.\w+) as (\d+) in ", log.read_text())
    return [(module, int(pid)) for module, pid in found]


@pytest.mark.slow  # a worker importing torch, and two trainings
def test_a_warm_stage_writes_what_a_fresh_one_writes(
    workspace: Path, tmp_path: Path, warm: tuple[dict[str, str], Path]
) -> None:
    env, log = warm
    fresh = tmp_path.parent / f"{tmp_path.name}-fresh"
    shutil.copytree(workspace, fresh)
    cold = subprocess.run(TRAIN, cwd=fresh, env=env | {"MNIST_PIPELINE_WARM": "0"},
                          capture_output=True, text=True)  # fmt: skip
    result = subprocess.run(TRAIN, cwd=workspace, env=env, capture_output=True, text=True)
    assert (cold.returncode, result.returncode) == (0, 0), cold.stderr + result.stderr
    assert [module for module, _ in served(log)] == ["mnist_pipeline.train"]
    assert "INFO mnist_pipeline." in result.stderr  # the stage's lines reach its caller
    times = re.compile(r"\d+(\.\d+)? s\b")
    assert times.sub("", result.stderr) == times.sub("", cold.stderr)
    model = "models/model.pt"
    assert (workspace / model).read_bytes() == (fresh / model).read_bytes()
    assert (workspace / "reports/training.csv").read_text() == (
        fresh / "reports/training.csv"
    ).read_text()


@pytest.mark.slow
def test_a_warm_stage_fails_as_a_fresh_one_does(
    workspace: Path, warm: tuple[dict[str, str], Path]
) -> None:
    env, log = warm
    (workspace / "params.yaml").write_text(
        (workspace / "params.yaml").read_text().replace("lr: 0.", "lr: -0.")
    )
    result = subprocess.run(TRAIN, cwd=workspace, env=env, capture_output=True, text=True)
    assert served(log), "the worker did not run the stage"
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "optimizer.lr" in line
    assert not (workspace / "models").exists()


@pytest.mark.slow
def test_a_stage_that_crashes_leaves_the_worker_serving(
    tmp_path: Path, warm: tuple[dict[str, str], Path]
) -> None:
    """An unexpected exception ends its stage as it ends a fresh process (the traceback, status
    1) and nothing else: the worker's socket stays, and the next stage is served."""
    env, log = warm
    crash = (
        "import sys; from mnist_pipeline.warm import client; "
        "sys.exit(client.run_warm(client.socket_path(), 'mnist_pipeline.no_such_stage', [], 60))"
    )
    result = subprocess.run([sys.executable, "-c", crash], cwd=tmp_path, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "No module named" in result.stderr
    subprocess.run([*STAGE, "check"], cwd=tmp_path, env=env, capture_output=True, check=False)
    served_modules = [module for module, _ in served(log)]
    assert served_modules == ["mnist_pipeline.no_such_stage", "mnist_pipeline.check"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["Ctrl-C", "caller killed", "supervisor killed"])
def test_a_warm_stage_stops_with_its_caller(
    workspace: Path, warm: tuple[dict[str, str], Path], how: str, request: pytest.FixtureRequest
) -> None:
    env, log = warm
    params = workspace / "params.yaml"
    params.write_text(params.read_text().replace("max_epochs: 2", "max_epochs: 1000"))
    stage = subprocess.Popen(TRAIN, cwd=workspace, env=env, stderr=subprocess.PIPE, text=True)
    request.addfinalizer(stage.kill)  # a failed check leaves no 1000-epoch training behind
    checkpoint = workspace / ".checkpoints" / "train" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and stage.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    ((_, pid),) = served(log)
    title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"mnist_pipeline.stage train --params params.yaml" in title  # what `ps` shows
    if how == "supervisor killed":  # its stage goes with it, and the caller says so
        supervisor = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(supervisor, signal.SIGKILL)
    else:
        stage.send_signal(signal.SIGINT if how == "Ctrl-C" else signal.SIGKILL)
    _, stderr = stage.communicate(timeout=120)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the stage outlived its caller"
    if how == "supervisor killed":
        assert stage.returncode == 1
        assert stderr.strip().splitlines()[-1].startswith("error: the warm worker running this")
    if how == "Ctrl-C":
        assert stage.returncode == 130, stderr
        assert stderr.strip().splitlines() == [
            line for line in stderr.strip().splitlines() if "train interrupted (Ctrl-C)" in line
        ]
    assert not (workspace / "models" / "model.pt").exists()


@pytest.mark.slow  # a worker importing torch
def test_the_first_stage_waits_for_the_worker_it_starts(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """No worker up: the stage starts one and is run by it once it has imported, instead of
    importing everything a second time beside it; Ctrl-C meanwhile runs nothing."""
    run = tmp_path_factory.mktemp("run")  # a short path: a socket's is at most 107 bytes
    env = clean_env(XDG_RUNTIME_DIR=str(run), MNIST_PIPELINE_WARM="60")
    waiting = subprocess.Popen([*STAGE, "check"], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    deadline = time.monotonic() + 30
    while not list(run.glob("*/*.sock")):
        assert time.monotonic() < deadline and waiting.poll() is None, "no worker was started"
        time.sleep(0.05)
    waiting.send_signal(signal.SIGINT)
    _, stderr = waiting.communicate(timeout=60)
    assert (waiting.returncode, stderr) == (
        130,
        "error: check interrupted (Ctrl-C) before it started.\n",
    )
    # no params.yaml here: the check stage, once run, fails at once with one line
    result = subprocess.run([*STAGE, "check"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    (log,) = run.glob("*/*.log")
    worker = int(re.search(r"worker (\d+): ready", log.read_text()).group(1))
    os.kill(worker, signal.SIGTERM)
    assert result.returncode == 1 and "params.yaml not found" in result.stderr
    assert [module for module, _ in served(log)] == ["mnist_pipeline.check"]  # not the first


@pytest.mark.slow
def test_the_worker_holds_none_of_the_project_s_code() -> None:
    """What lets an edit reach the next warm stage: only the launcher, hashed into the worker's
    key, is imported before the fork."""
    code = (
        "import sys\nfrom mnist_pipeline.warm import worker\n"
        "for name in worker.PRELOAD: __import__(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('mnist_pipeline')))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    launcher = ["mnist_pipeline", "mnist_pipeline.stage", "mnist_pipeline.warm"]
    assert out.strip() == str(
        [*launcher, "mnist_pipeline.warm.client", "mnist_pipeline.warm.worker"]
    )
