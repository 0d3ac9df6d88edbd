"""The real pipeline, end to end, in temporary copies of the repo: `dvc repro`, `dvc exp run`, a
queued grid, a Hydra sweep, and a real `mlflow server`.

Synthetic MNIST-shaped data is served over HTTP on 127.0.0.1; DVC, Hydra, Lightning and MLflow all
run for real, and the MLflow store is read back afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from servers import free_port, start_mlflow_server, stop_mlflow_server
from synthetic import checksums, mirror_files, synthetic_digits
from workspace import clean_env, commit, copy_repo

pytestmark = pytest.mark.slow

# Appended to the copy's conf/config.yaml: after `_self_`, so these win over the groups, and
# `dvc exp run -S` composes them too.
TINY = {
    "data": {
        "val_size": 100,
        "batch_size": 64,
        "files": {key: {"sha256": digest} for key, digest in checksums(mirror_files()).items()},
    },
    "trainer": {"max_epochs": 4, "enable_progress_bar": False},
}
Repo = tuple[Path, dict[str, str]]
SECRET = "wJalrXUtnFEMI-test-secret-K7MDENG"  # in the pipeline's environment, never in MLflow


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=540)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def outs(root: Path, stage: str) -> dict[str, str]:
    """A stage's outputs and their hashes, as dvc.lock records them."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for out in lock["stages"][stage]["outs"]}


def make_repo(dest: Path, mirror: str) -> Repo:
    """A git + DVC repo with the project's files as a clone has them, set up for synthetic data."""
    copy_repo(dest)
    with open(dest / "conf" / "config.yaml", "a") as f:
        f.write("\n# test settings\n" + yaml.safe_dump(TINY))
    env = clean_env(MNIST_MIRROR=mirror)
    run([sys.executable, "-m", "mnist_pipeline.config"], dest, env)
    commit(dest, env, "baseline")
    return dest, env


def client_for(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def runs_in_store(client: mlflow.MlflowClient) -> list[mlflow.entities.Run]:
    experiment = client.get_experiment_by_name("mnist")
    assert experiment is not None, "experiment 'mnist' missing from the store"
    return client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])


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


def test_exp_run_with_override_reruns_only_train_and_evaluate(
    tmp_path: Path, http_mirror: str
) -> None:
    """Also the champion rule, forced both ways: a weak first model (a learning rate too small to
    learn), a strictly better experiment (champion moves), then a strictly worse one (it stays)."""
    root, env = make_repo(tmp_path, http_mirror)
    run([sys.executable, "-m", "mnist_pipeline.config", "optimizer.lr=1e-6"], root, env)
    run(["dvc", "repro"], root, env)
    trained = outs(root, "train")
    run(["dvc", "repro", "-f", "train"], root, env)  # the same training again: the same bytes
    assert outs(root, "train")["models/model.pt"] == trained["models/model.pt"]
    commit(root, env, "pipeline ran")

    result = run(["dvc", "exp", "run", "-S", "optimizer.lr=0.002"], root, env)
    assert "Stage 'download' didn't change, skipping" in result.stdout
    assert "Stage 'preprocess' didn't change, skipping" in result.stdout
    assert "Running stage 'train'" in result.stdout
    assert "Running stage 'evaluate'" in result.stdout

    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env).stdout)
    experiments = [exp for rev in shown for exp in (rev.get("experiments") or [])]
    assert experiments, shown
    data = experiments[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["optimizer"]["lr"] == 0.002
    metrics = data["metrics"]["reports/metrics.json"]["data"]
    assert metrics["test"]["acc"] >= 0.9

    client = client_for(root)
    first, _forced, latest = runs_in_store(client)  # the forced train was not evaluated
    assert latest.data.params["optimizer.lr"] == "0.002"
    assert latest.info.run_name == experiments[0]["revs"][0]["name"]
    assert latest.data.tags["dvc.experiment"] == latest.info.run_name
    assert latest.data.tags["overrides"] == "optimizer.lr=0.002"
    assert metrics["mlflow"]["run_id"] == latest.info.run_id  # dvc exp show leads to the run

    def aliases() -> tuple[str, str]:
        get = client.get_model_version_by_alias
        return get("mnist-classifier", "champion").run_id, get(
            "mnist-classifier", "candidate"
        ).run_id

    assert latest.data.metrics["test_acc"] > first.data.metrics["test_acc"]  # as set up
    assert aliases() == (latest.info.run_id, latest.info.run_id)  # strictly better: promoted

    run(["dvc", "exp", "run", "-S", "optimizer.lr=1e-6", "-S", "seed=7"], root, env)
    *_, worst = runs_in_store(client)
    assert worst.data.metrics["test_acc"] < latest.data.metrics["test_acc"]  # as set up
    assert aliases() == (latest.info.run_id, worst.info.run_id)  # worse: only the candidate


def run_queue(root: Path, env: dict[str, str], seconds: float) -> str:
    """`dvc queue start -j 2`, then `dvc queue status` once nothing is queued or running (or
    `seconds` have passed)."""
    run(["dvc", "queue", "start", "-j", "2"], root, env)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], root, env).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    return status


def test_queued_grid_runs_and_lands_in_the_main_store(tmp_path: Path, http_mirror: str) -> None:
    root, env = make_repo(tmp_path, http_mirror)
    run(["dvc", "repro"], root, env)
    commit(root, env, "pipeline ran")

    run(["dvc", "exp", "run", "--queue", "-S", "optimizer.lr=0.001,0.002"], root, env)
    status = run_queue(root, env, seconds=240)  # two workers, one SQLite store
    assert status.count("Success") == 2, status

    grid = runs_in_store(client_for(root))[1:]  # after the baseline's run
    assert sorted(r.data.params["optimizer.lr"] for r in grid) == ["0.001", "0.002"]
    assert {r.data.tags["varied"] for r in grid} == {"optimizer.lr"}
    assert len({r.data.tags["dvc.baseline"] for r in grid}) == 1
    assert all(r.info.status == "FINISHED" and "test_acc" in r.data.metrics for r in grid)


def test_hydra_sweep_is_a_parent_run_with_a_child_per_point(
    tmp_path: Path, http_mirror: str
) -> None:
    root, env = make_repo(tmp_path, http_mirror)
    run(["dvc", "repro", "preprocess"], root, env)
    sweep = ["optimizer.lr=0.001,0.003", "trainer.max_epochs=2"]
    run([sys.executable, "-m", "mnist_pipeline.train", "-m", *sweep], root, env)

    runs = runs_in_store(client_for(root))
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert parents[0].info.status == "FINISHED"
    assert sorted(c.data.params["optimizer.lr"] for c in children) == ["0.001", "0.003"]
    assert all("test_acc" in c.data.metrics for c in children)
    # outputs in Hydra's folders, one per point; never in the DVC-tracked ones
    assert len(list((root / "multirun").glob("*/*/*/model.pt"))) == 2
    assert not (root / "models" / "model.pt").exists()


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


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend and proxied artifacts."""
    port = free_port()
    server = start_mlflow_server(tmp_path, port)
    yield f"http://127.0.0.1:{port}"
    stop_mlflow_server(server)


def test_pipeline_logs_to_a_tracking_server(
    tmp_path: Path, http_mirror: str, mlflow_server: str
) -> None:
    """A team's server URI carries a token: it reaches MLflow, never what MLflow or git keeps."""
    root, env = make_repo(tmp_path / "repo", http_mirror)
    with_token = mlflow_server.replace("http://", f"http://alice:{SECRET}@")
    run([sys.executable, "-m", "mnist_pipeline.config", f"tracking.uri={with_token}"], root, env)
    result = run(["dvc", "repro"], root, env)

    assert not (root / "mlflow.db").exists()  # nothing went to the local default
    client = mlflow.MlflowClient(mlflow_server)
    (run_,) = runs_in_store(client)
    assert run_.info.status == "FINISHED" and "test_acc" in run_.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
    assert {"config.yaml", "confusion.png", "metrics.json"} <= artifacts
    champion = client.get_model_version_by_alias("mnist-classifier", "champion")
    assert champion.run_id == run_.info.run_id
    metrics = json.loads((root / "reports" / "metrics.json").read_text())
    assert metrics["mlflow"]["url"].startswith(mlflow_server)

    assert run_.data.tags["overrides"] == f"tracking.uri={mlflow_server.replace('//', '//***@')}"
    recorded = [
        json.dumps([run_.data.params, run_.data.tags]),
        Path(client.download_artifacts(run_.info.run_id, "config.yaml", str(tmp_path))).read_text(),
        *(p.read_text() for p in [*root.glob("reports/*.json"), *root.glob("models/*.json")]),
        result.stdout + result.stderr,
    ]
    assert not [i for i, text in enumerate(recorded) if SECRET in text]
    assert run_.data.params["tracking.uri"] == mlflow_server.replace("http://", "http://***@")


def test_killed_training_resumes_in_the_same_mlflow_run(tmp_path: Path, http_mirror: str) -> None:
    root, env = make_repo(tmp_path, http_mirror)
    run(["dvc", "repro", "preprocess"], root, env)
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
    run(["dvc", "repro", "preprocess"], root, env)
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
