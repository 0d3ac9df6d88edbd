"""The real pipeline, end to end, in a temporary copy of the repo: one `dvc repro`, then what it
left: the run, its tags and dataset, the registered model, no secret, and the stages' refusals.

Synthetic MNIST-shaped data is served over HTTP on 127.0.0.1; DVC, Hydra, Lightning and MLflow all
run for real, and the MLflow store is read back afterwards. Experiments are in
test_experiments.py, queued grids in test_queue_race.py, sweeps in test_sweeps.py, a tracking
server in test_team_server.py, interrupted runs in test_recovery.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest
import yaml

from pipeline_repo import Repo, client_for, make_repo, run, runs_in_store
from servers import free_port
from synthetic import synthetic_digits

pytestmark = pytest.mark.slow

SECRET = "wJalrXUtnFEMI-test-secret-K7MDENG"  # in the pipeline's environment, never in MLflow


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory, http_mirror: str) -> Repo:
    """A repo after one `dvc repro` (shared by the read-only tests below)."""
    root, env = make_repo(tmp_path_factory.mktemp("repro"), http_mirror)
    run(["dvc", "repro"], root, env | {"AWS_SECRET_ACCESS_KEY": SECRET})
    return root, env


def test_repro_runs_all_stages_and_tracks_one_run(reproduced: Repo) -> None:
    root, env = reproduced
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    assert metrics["test"]["acc"] >= 0.9, metrics
    assert metrics["model"] == {"params": 61_706, "macs": 416_520}
    for out in ("data/raw", "data/processed", "models/model.pt", "reports/confusion.png"):
        assert (root / out).exists(), out
    confusion = (root / "reports" / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 1 + 200

    client = client_for(root)
    (run_,) = runs_in_store(client)
    run_id = run_.info.run_id
    assert run_.info.status == "FINISHED"
    assert run_id == json.loads((root / "models/mlflow_run.json").read_text())["run_id"]
    assert metrics["mlflow"]["run_id"] == run_id
    assert metrics["mlflow"]["url"].endswith(f"/runs/{run_id}")
    assert run_.data.params["optimizer.lr"] == "0.003"
    assert run_.data.params["model._target_"] == "mnist_pipeline.model.networks.ConvNet"
    assert run_.data.metrics["test_acc"] == pytest.approx(metrics["test"]["acc"])
    assert run_.data.metrics["model_params"] == 61_706
    assert {
        "test_loss",
        "test_f1_3",
        "train_loss",
        "val_loss",
        "val_acc",
    } <= run_.data.metrics.keys()
    for name in ("train_loss", "val_loss", "val_acc"):  # one point per epoch, stepped by epoch
        history = client.get_metric_history(run_id, name)
        assert [m.step for m in history] == [0, 1, 2, 3], name
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "confusion.png", "metrics.json"} <= artifacts

    again = run(["dvc", "repro"], root, env)
    assert "Data and pipelines are up to date." in again.stdout
    assert len(runs_in_store(client)) == 1


def test_run_carries_tags_and_the_dataset_it_trained_on(reproduced: Repo) -> None:
    root, _ = reproduced
    (run_,) = runs_in_store(client_for(root))
    tags = run_.data.tags
    assert tags["model"] == "lenet5"
    assert tags["overrides"] == "(defaults)"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    assert tags["git.commit"] == head.stdout.strip()
    assert tags["git.dirty"] in ("True", "False")

    lock = yaml.safe_load((root / "dvc.lock").read_text())
    processed = next(
        o for o in lock["stages"]["preprocess"]["outs"] if o["path"] == "data/processed"
    )
    (dataset_input,) = run_.inputs.dataset_inputs
    assert dataset_input.dataset.digest == processed["md5"].removesuffix(".dir")
    assert dataset_input.dataset.name == "mnist-processed"
    assert json.loads(dataset_input.dataset.source) == {"uri": "data/processed"}  # not this disk


def test_model_is_registered_and_the_champion_predicts_digits(reproduced: Repo) -> None:
    root, _ = reproduced
    client = client_for(root)
    (run_,) = runs_in_store(client)
    champion = client.get_model_version_by_alias("mnist-classifier", "champion")
    candidate = client.get_model_version_by_alias("mnist-classifier", "candidate")
    assert champion.version == candidate.version and champion.run_id == run_.info.run_id

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/mnist-classifier@champion")
    images, labels = synthetic_digits(50, seed=2)  # the synthetic test set's first 50
    logits = model.predict(images.astype(np.float32))
    assert (np.argmax(logits, axis=1) == labels).mean() >= 0.9


def test_no_secret_from_the_environment_reaches_the_tracking_store(reproduced: Repo) -> None:
    root, _ = reproduced
    stored = [root / "mlflow.db", *(p for p in (root / "mlruns").rglob("*") if p.is_file())]
    assert len(stored) > 5
    leaks = [p for p in stored if SECRET.encode() in p.read_bytes()]
    assert not leaks, leaks


def test_train_stage_with_an_unreachable_server_fails_fast_and_keeps_the_model(
    reproduced: Repo,
) -> None:
    root, env = reproduced
    model = root / "models" / "model.pt"
    before = model.read_bytes()
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mnist_pipeline.train", "--params", "params.yaml"],
        cwd=root,
        env=env | {"MLFLOW_TRACKING_URI": uri.replace("//", f"//alice:{SECRET}@")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    # MLflow's own retries (7, backing off up to 2 min) would take minutes; the stage gives up
    # after one short try. The bound leaves room for a busy machine's imports.
    assert time.monotonic() - started < 100
    shown = uri.replace("//", "//***@")  # the token is used, never shown
    assert f"error: the MLflow tracking server at {shown} is not answering" in result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert model.read_bytes() == before


def test_evaluate_refuses_a_store_or_a_model_that_is_not_trains(reproduced: Repo) -> None:
    """A different MLFLOW_TRACKING_URI, or a model.pt replaced after training: one paragraph,
    before anything is evaluated or logged."""
    root, env = reproduced
    model, reports = root / "models" / "model.pt", root / "reports" / "metrics.json"
    kept, before = model.read_bytes(), reports.read_text()
    evaluate = [sys.executable, "-m", "mnist_pipeline.evaluate"]

    def refused(extra: dict[str, str], message: str) -> None:
        result = subprocess.run(evaluate, cwd=root, env=env | extra, capture_output=True, text=True)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert reports.read_text() == before

    other = f"sqlite:///{root / 'other.db'}"  # recorded and shown relative to the repo
    refused({"MLFLOW_TRACKING_URI": other}, "but this evaluate would log to sqlite:///other.db")
    assert not (root / "other.db").exists()
    try:
        model.write_bytes(kept[:-1] + bytes([kept[-1] ^ 1]))
        refused({}, "models/model.pt is not the model MLflow run")
    finally:
        model.write_bytes(kept)
