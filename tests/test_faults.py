"""Bad input and broken surroundings: a clear error naming the culprit, before any work is lost."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mnist_pipeline.config import compose
from mnist_pipeline.data import splits
from mnist_pipeline.model import model_file
from mnist_pipeline.model.networks import ConvNet
from mnist_pipeline.preflight import check_training
from mnist_pipeline.tracking.store import TrackingError, connect
from mnist_pipeline.training.build import build
from synthetic import synthetic_digits
from workspace import REPO

CONF = REPO / "conf"


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small processed dataset, as preprocess writes it."""
    folder = tmp_path_factory.mktemp("processed")
    train_x, train_y = synthetic_digits(256, seed=1)
    test_x, test_y = synthetic_digits(64, seed=2)
    splits.save(
        {
            "train": splits.Split(train_x, train_y.astype(np.int64)),
            "val": splits.Split(test_x, test_y.astype(np.int64)),
            "test": splits.Split(test_x, test_y.astype(np.int64)),
        },
        folder,
    )
    return folder


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc' must be a positive int"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 must be a positive int"),
        ("optimizer.lr=-1", "optimizer.lr=-1 must be a positive float"),
        ("data.batch_size=2.5", "data.batch_size=2.5 must be a positive int"),
        ("optimizer.weight_decay=-1", "optimizer: Invalid weight_decay value: -1"),
        ("model.stride=20", "model.padding='valid' with model.kernel_size=5, model.stride=20"),
    ],
)
def test_bad_values_fail_before_any_work_naming_the_key(
    override: str, message: str, processed: Path
) -> None:
    cfg = compose([override], conf_dir=CONF)
    with pytest.raises(Exception) as info:
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
    assert fit.trainer.current_epoch < 3  # stopped at once, not after 20 epochs of NaN


class Payload:
    """Stands for anything that is not a tensor: unpickling it would run its module's code."""


def test_checkpoint_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"model": {}, "state_dict": {}, "normalisation": Payload()}, path)
    with pytest.raises(model_file.CheckpointError, match="refusing to load it"):
        model_file.load(path)


def test_checkpoint_round_trip_and_foreign_files(tmp_path: Path) -> None:
    model = ConvNet()
    cfg = {"_target_": "mnist_pipeline.model.networks.ConvNet"}
    model_file.save(tmp_path / "model.pt", model, cfg, {"mean": 0.1, "std": 0.3})
    loaded, norm = model_file.load(tmp_path / "model.pt")
    assert norm == {"mean": 0.1, "std": 0.3}
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(model_file.CheckpointError, match="not a model saved by this project"):
        model_file.load(tmp_path / "other.pt")


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


def test_checkpoint_naming_a_foreign_callable_is_refused(tmp_path: Path) -> None:
    """weights_only stops pickles, but `_target_` would still be called: only our networks are."""
    path = tmp_path / "model.pt"
    payload = {"model": {"_target_": "os.system", "_args_": ["true"]}, "state_dict": {},
               "normalisation": {"mean": 0.1, "std": 0.3}}  # fmt: skip
    torch.save(payload, path)
    with pytest.raises(model_file.CheckpointError, match=r"asks to build 'os\.system'"):
        model_file.load(path)


def test_relative_sqlite_uri_keeps_artifacts_beside_the_store(tmp_path: Path, monkeypatch) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    connect(OmegaConf.create({"uri": "sqlite:///relative.db", "experiment": "mnist"}))
    experiment = mlflow.get_experiment_by_name("mnist")
    assert experiment.artifact_location == (tmp_path / "mlruns").as_uri()
