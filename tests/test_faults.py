"""Bad input and broken surroundings: a clear error naming the culprit, before any work is lost."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mnist_pipeline.config.checks import ConfigError, check_training
from mnist_pipeline.config.params import compose, to_yaml
from mnist_pipeline.tracking.store import TrackingError, connect
from mnist_pipeline.training.build import build
from synthetic import write_processed
from workspace import REPO, clean_env

CONF = REPO / "conf"


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small processed dataset, as preprocess writes it."""
    return write_processed(tmp_path_factory.mktemp("processed"))


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("trainer.max_epochs=abc", ConfigError, "trainer.max_epochs='abc' must be a positive int"),
        ("trainer.max_epochs=0", ConfigError, "trainer.max_epochs=0 must be a positive int"),
        ("optimizer.lr=-1", ConfigError, "optimizer.lr=-1 must be a positive float"),
        ("data.batch_size=2.5", ConfigError, "data.batch_size=2.5 must be a positive int"),
        ("optimizer.weight_decay=-1", ConfigError, "optimizer: Invalid weight_decay value: -1"),
        (
            "model.stride=20",
            ConfigError,  # the model's own ValueError, without Hydra's wrapping
            "model.padding='valid' with model.kernel_size=5, model.stride=20",
        ),
    ],
)
def test_bad_values_fail_before_any_work_naming_the_key(
    override: str, error: type[Exception], message: str, processed: Path
) -> None:
    """Each an error the train stage turns into one paragraph (`train.py`'s expected errors)."""
    cfg = compose([override], conf_dir=CONF)
    with pytest.raises(error) as info:
        check_training(cfg, processed)
    assert message in str(info.value)


def test_missing_processed_data_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dvc repro preprocess"):
        check_training(compose([], conf_dir=CONF), tmp_path)


def test_diverging_training_stops_with_a_clear_message(processed: Path) -> None:
    cfg = compose(
        ["optimizer.lr=1e12", "trainer.max_epochs=20", "trainer.enable_progress_bar=false"],
        conf_dir=CONF,
    )
    fit = build(cfg, processed, [])
    with pytest.raises(FloatingPointError, match=r"training loss became nan.*Lower optimizer.lr"):
        fit.trainer.fit(fit.module, datamodule=fit.datamodule)
    assert fit.trainer.current_epoch == 0  # stopped at the end of the epoch it diverged in


def test_unreachable_tracking_server_fails_fast_naming_the_uri() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(TrackingError, match=f"{uri} is not answering"):
        connect(OmegaConf.create({"uri": uri, "experiment": "mnist"}))
    assert time.monotonic() - started < 30


def test_tracking_server_answering_errors_fails_fast_naming_the_uri() -> None:
    class Broken(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(500, "broken")

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    started = time.monotonic()
    try:
        with pytest.raises(TrackingError, match=f"{uri} is not answering"):
            connect(OmegaConf.create({"uri": uri, "experiment": "mnist"}))
    finally:
        server.shutdown()
    assert time.monotonic() - started < 30


def test_relative_sqlite_uri_keeps_artifacts_beside_the_store(tmp_path: Path, monkeypatch) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    connect(OmegaConf.create({"uri": "sqlite:///relative.db", "experiment": "mnist"}))
    experiment = mlflow.get_experiment_by_name("mnist")
    assert experiment.artifact_location == (tmp_path / "mlruns").as_uri()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.attempts=0", "data.attempts=0 must be a positive int"),
        ("data.timeout_s=-1", "data.timeout_s=-1 must be a positive float"),
    ],
)
def test_bad_download_settings_fail_before_any_fetch(
    override: str, message: str, tmp_path: Path, synthetic_mirror: Path
) -> None:
    (tmp_path / "params.yaml").write_text(to_yaml(compose([override], conf_dir=CONF)))
    result = subprocess.run(
        [sys.executable, "-m", "mnist_pipeline.download"],
        cwd=tmp_path,
        env=clean_env(MNIST_MIRROR=str(synthetic_mirror)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing fetched, nothing written
