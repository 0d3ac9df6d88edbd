"""Interrupted training loses nothing: a killed train stage resumes in the same MLflow run, and a
tracking server that dies mid-run gets what it missed once it is back.

Real processes in a temporary copy of the repo, a real `mlflow server` on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from pipeline_repo import client_for, make_repo, run, runs_in_store
from servers import free_port, start_mlflow_server
from synthetic import write_processed

pytestmark = pytest.mark.slow


def test_killed_training_resumes_in_the_same_mlflow_run(tmp_path: Path, http_mirror: str) -> None:
    root, env = make_repo(tmp_path, http_mirror)
    write_processed(root / "data" / "processed", n_train=512)  # the data, without DVC's stages
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["trainer"]["max_epochs"] = 40
    (root / "long.yaml").write_text(yaml.safe_dump(params))
    train = [sys.executable, "-m", "mnist_pipeline.train", "--params", "long.yaml"]

    checkpoint = root / ".checkpoints" / "train" / "last.ckpt"
    first = subprocess.Popen(train, cwd=root, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert first.poll() is None, "training ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    first.kill()  # SIGKILL, mid-epoch or mid-write
    first.wait()
    assert not (root / "models" / "model.pt").exists()

    run(train, root, env)
    client = client_for(root)
    (run_,) = runs_in_store(client)  # the same run went on; no second one
    assert run_.data.tags.get("resumed") == "true"
    steps = sorted(m.step for m in client.get_metric_history(run_.info.run_id, "val_acc"))
    assert steps == list(range(40))  # every epoch once: none lost, none logged twice
    assert run_.info.status == "FINISHED"
    history = (root / "reports" / "training.csv").read_text().splitlines()
    assert len(history) == 1 + 40  # the curves span the whole training, not just the resumed part
    assert not checkpoint.parent.exists()  # cleaned up once the model was saved


def test_tracking_server_dying_mid_run_loses_no_result(tmp_path: Path, http_mirror: str) -> None:
    root, env = make_repo(tmp_path / "repo", http_mirror)
    write_processed(root / "data" / "processed", n_train=512)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["trainer"]["max_epochs"] = 10
    (root / "long.yaml").write_text(yaml.safe_dump(params))
    train = [sys.executable, "-m", "mnist_pipeline.train", "--params", "long.yaml"]
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path, port)

    checkpoint = root / ".checkpoints" / "train" / "last.ckpt"
    no_retries = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}  # faster
    first = subprocess.Popen(
        train, cwd=root, env=env | no_retries, stderr=subprocess.PIPE, text=True
    )
    while not checkpoint.exists() and first.poll() is None:
        time.sleep(0.05)
    os.killpg(server.pid, 9)  # the server goes away mid-run
    server.wait()
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 1
    assert f"training finished and models/model.pt is saved, but MLflow at {uri}" in stderr
    assert (root / "models" / "model.pt").exists()
    assert len((root / "reports" / "training.csv").read_text().splitlines()) == 1 + 10

    server = start_mlflow_server(tmp_path, port)  # back, with the same store
    try:
        run(train, root, env | {"MLFLOW_TRACKING_URI": uri})
        client = mlflow.MlflowClient(uri)
        (run_,) = runs_in_store(client)  # what was missed went into the same run
        steps = sorted(m.step for m in client.get_metric_history(run_.info.run_id, "val_acc"))
        assert steps == list(range(10))  # the missed epochs logged once, none twice
        assert client.get_model_version_by_alias("mnist-classifier", "candidate")
    finally:
        os.killpg(server.pid, 9)  # and gone again, for evaluate
        server.wait(timeout=30)

    evaluate = [sys.executable, "-m", "mnist_pipeline.evaluate"]
    result = subprocess.run(
        evaluate, cwd=root, env=env | no_retries, capture_output=True, text=True
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the test reports are in reports/ (test accuracy" in result.stderr
    assert f"but MLflow at {uri} did not take them" in result.stderr
    metrics = json.loads((root / "reports" / "metrics.json").read_text())  # written all the same
    assert metrics["mlflow"]["run_id"] == run_.info.run_id and metrics["test"]["acc"] > 0.5
