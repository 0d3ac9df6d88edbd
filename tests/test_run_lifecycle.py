"""The MLflow run through interruptions and resumes: Ctrl-C or SIGTERM leaves it KILLED and the
stage says "interrupted" in one line; a resumed run takes the current DVC experiment's name; the
run's link in reports points at a UI that holds it, or is null."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from mnist_pipeline.config.params import compose, to_yaml
from mnist_pipeline.runtime.command import run_stage
from mnist_pipeline.tracking.run import training_run
from mnist_pipeline.tracking.run_file import RunRecord
from mnist_pipeline.tracking.store import connect
from mnist_pipeline.utils.paths import Outputs
from stores import fresh_store
from synthetic import write_processed
from workspace import REPO, clean_env


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with MLflow's tables and no experiment of ours."""
    return fresh_store(tmp_path_factory, tmp_path_factory.mktemp("template"))


@pytest.fixture
def cfg(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DictConfig]:
    for name in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    shutil.copy(template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    yield OmegaConf.create({"tracking": {"uri": uri, "experiment": "mnist"}})
    mlflow.set_tracking_uri(None)


def interrupted_run(cfg: DictConfig, name: str = "old-exp") -> str:
    """A run as a killed training leaves it."""
    connect(cfg.tracking)
    run = mlflow.start_run(run_name=name, tags={"dvc.experiment": name})
    mlflow.end_run("FAILED")
    return run.info.run_id


def lightning_exit() -> None:
    """What Lightning does on Ctrl-C in `fit`: catch it and `sys.exit(1)`."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        sys.exit(1)


def failure() -> None:
    raise ValueError("a bug")


@pytest.mark.parametrize(
    ("block", "status"),
    [(lightning_exit, "KILLED"), (signal.default_int_handler, "KILLED"), (failure, "FAILED")],
    ids=["lightning-ctrl-c", "ctrl-c", "error"],
)
def test_an_interrupted_run_is_killed_a_failed_one_failed(
    cfg: DictConfig, tmp_path: Path, block, status: str
) -> None:
    run_id = interrupted_run(cfg)
    interrupts = (SystemExit, KeyboardInterrupt, ValueError)
    with pytest.raises(interrupts), training_run(cfg, tmp_path, Outputs.under(tmp_path), run_id):
        block(signal.SIGINT, None) if block is signal.default_int_handler else block()
    assert mlflow.get_run(run_id).info.status == status


def test_a_resumed_run_takes_the_current_experiments_name(
    cfg: DictConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = interrupted_run(cfg, "old-exp")
    monkeypatch.setenv("DVC_EXP_NAME", "new-exp")
    out = Outputs.under(tmp_path / "out")
    with training_run(cfg, tmp_path, out, run_id):
        out.model.parent.mkdir()
        out.model.write_bytes(b"weights")
    run = mlflow.get_run(run_id)
    assert run.info.run_name == "new-exp" and run.data.tags["mlflow.runName"] == "new-exp"
    assert run.data.tags["dvc.experiment"] == "new-exp" and run.data.tags["resumed"] == "true"
    assert run.info.status == "FINISHED"


def test_a_run_resumed_outside_dvc_keeps_its_name(cfg: DictConfig, tmp_path: Path) -> None:
    run_id = interrupted_run(cfg, "old-exp")
    with pytest.raises(ValueError), training_run(cfg, tmp_path, Outputs.under(tmp_path), run_id):
        failure()
    run = mlflow.get_run(run_id)
    assert run.info.run_name == "old-exp" and run.data.tags["dvc.experiment"] == "old-exp"


def test_the_run_link_points_only_at_a_ui_that_holds_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    record = RunRecord("abc", "mnist", "1", "-", "-")
    page = "/#/experiments/1/runs/abc"
    assert record.link(f"sqlite:///{tmp_path}/mlflow.db") == f"http://127.0.0.1:5000{page}"
    assert record.link("https://user:token@host:5000/") == f"https://host:5000{page}"
    for elsewhere in (
        f"sqlite:///{tmp_path}/other.db",
        "sqlite:////somewhere/else/mlflow.db",
        "postgresql://user:pw@db.example/mlflow",
        f"file://{tmp_path}/mlruns",
    ):
        assert record.link(elsewhere) is None, elsewhere


def hydra_interrupted() -> None:
    """Ctrl-C during Hydra's compose, as Hydra reports it."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            None._invalidate_flags_cache()  # type: ignore[attr-defined]
    except AttributeError as e:
        raise ConfigCompositionException(str(e)) from e


def terminated() -> None:
    handled = signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert handled, "SIGTERM would end the stage at once, its run left RUNNING"
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)


class Dying:
    def __del__(self) -> None:  # as a Lightning profiler's, when the garbage collector runs it
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs in here, where a raised exception is only reported


def terminated_in_a_finalizer() -> None:
    """The SIGTERM was lost: the run went on to its end and exited 0."""
    Dying()
    time.sleep(5)


@pytest.mark.parametrize(
    ("main", "code", "how"),
    [
        (hydra_interrupted, 130, "Ctrl-C"),
        (lightning_exit, 130, "Ctrl-C"),
        (terminated, 143, "SIGTERM"),
        (terminated_in_a_finalizer, 143, "SIGTERM"),
    ],
    ids=["hydra", "lightning", "sigterm", "sigterm-in-a-finalizer"],
)
def test_an_interrupted_stage_says_so_in_one_line(
    main, code: int, how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(sys, "argv", ["/x/train.py"])
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGALRM)}
    for number in previous:  # as a stage's own process starts (a test before may have left one)
        signal.signal(number, signal.SIG_DFL)
    try:
        with pytest.raises(SystemExit) as info:
            run_stage(main, ConfigCompositionException)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert info.value.code == code
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: train interrupted ({how})")


@pytest.mark.slow  # a real stage: seconds of imports
def test_ctrl_c_mid_training_leaves_the_run_killed_and_one_line(
    template: Path, tmp_path: Path
) -> None:
    """The real train stage on tiny data, sent SIGINT once an epoch is checkpointed."""
    (tmp_path / "data" / "processed").mkdir(parents=True)
    write_processed(tmp_path / "data" / "processed")  # as preprocess writes it
    overrides = ["model=mlp", "trainer.max_epochs=1000", "trainer.enable_progress_bar=false",
                 "data.batch_size=64", "tracking.experiment=interrupted"]  # fmt: skip
    (tmp_path / "params.yaml").write_text(to_yaml(compose(overrides, conf_dir=REPO / "conf")))
    shutil.copy(template, tmp_path / "mlflow.db")
    shutil.copytree(REPO / "conf", tmp_path / "conf")  # the run's tags read the config groups
    stage = subprocess.Popen(
        [sys.executable, "-m", "mnist_pipeline.train", "--params", "params.yaml"],
        cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    checkpoint = tmp_path / ".checkpoints" / "train" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and stage.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    stage.send_signal(signal.SIGINT)
    _, stderr = stage.communicate(timeout=300)
    assert stage.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "train interrupted (Ctrl-C)" in errors[0], stderr[-3000:]
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        statuses = db.execute("SELECT status FROM runs").fetchall()
    assert statuses == [("KILLED",)]
    assert not (tmp_path / "models" / "model.pt").exists()
