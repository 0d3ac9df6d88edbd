"""The champion under concurrent writers: wherever results finish in whatever order, `champion`
ends on the version with the best test accuracy, and every run lands whole.

Both tests widen the race between choosing the champion and moving the alias with
`MNIST_CHAMPION_PAUSE_S` (registry.py). Real processes, a real SQLite store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from mnist_pipeline.tracking.registry import PAUSE_ENV, REGISTERED_MODEL
from pipeline_repo import client_for, make_repo, run, run_queue, runs_in_store
from stores import fresh_store
from workspace import clean_env, commit

pytestmark = pytest.mark.slow

# Appended to the test repo's tags.py before queueing: every run it makes carries the tag `code`.
CODE_TAG = """
_run_tags = run_tags


def run_tags(cfg):  # noqa: F811
    return {**_run_tags(cfg), "code": "as queued"}
"""

# One evaluate's promotion: log the test accuracy as evaluate does, then apply the champion rule.
# Imported and ready before the start signal, then started `delay` seconds after it.
PROMOTE = """
import sys, time
from pathlib import Path
import mlflow
from mnist_pipeline.tracking import registry
run_id, acc, delay, folder = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
(folder / f"ready-{run_id}").touch()
while not (folder / "go").exists():
    time.sleep(0.01)
time.sleep(delay)
mlflow.MlflowClient().log_metric(run_id, "test_acc", acc)
registry.promote_if_better(run_id, acc)
"""


def test_concurrent_promotions_leave_the_best_as_champion(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Three writers, the best second: the first chooses itself before the best has logged, the
    last reads the registry before the best has moved the alias. "Read the champion, compare,
    move it" ends on the last, a worse model, every time; the rule must not."""
    uri = f"sqlite:///{fresh_store(tmp_path_factory, tmp_path)}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("mnist", (tmp_path / "mlruns").as_uri())
    client.create_registered_model(REGISTERED_MODEL)
    writers = [(0.91, 0.0), (0.97, 0.3), (0.88, 0.6)]  # (test_acc, start delay in s)
    run_ids = []
    for _ in writers:
        run_ = client.create_run(experiment)
        source = f"{run_.info.artifact_uri}/model"
        client.create_model_version(REGISTERED_MODEL, source, run_.info.run_id)
        run_ids.append(run_.info.run_id)

    env = clean_env(MLFLOW_TRACKING_URI=uri, **{PAUSE_ENV: "1"})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROMOTE, run_id, str(acc), str(delay), str(tmp_path)], env=env
        )
        for run_id, (acc, delay) in zip(run_ids, writers, strict=True)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(procs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    (tmp_path / "go").touch()
    assert [p.wait(timeout=120) for p in procs] == [0] * len(procs)

    champion = client.get_model_version_by_alias(REGISTERED_MODEL, "champion")
    assert champion.run_id == run_ids[1], dict(zip(run_ids, writers, strict=True))


def test_queued_grid_on_two_workers_lands_whole_and_crowns_the_best(
    tmp_path: Path, http_mirror: str
) -> None:
    """`dvc queue start -j 2`: two workers train and evaluate at once into one SQLite store.

    Each runs the code it was queued with, the code its dvc.lock hashes: not the code the venv's
    editable install points at (this checkout's, without the tag), nor an edit made in the
    workspace after queueing."""
    root, env = make_repo(tmp_path, http_mirror)
    tags = root / "src" / "mnist_pipeline" / "tracking" / "tags.py"
    tags.write_text(tags.read_text() + CODE_TAG)
    run(["dvc", "repro"], root, env)  # for the code hashes in dvc.lock
    commit(root, env, "pipeline ran")
    baseline = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["train"]["deps"]
    (root / "mlflow.db").unlink()  # the two queued runs alone in the store
    shutil.rmtree(root / "mlruns")

    grid = ["-S", "optimizer.lr=0.000001,0.003", "-S", "trainer.max_epochs=1"]
    run(["dvc", "exp", "run", "--queue", *grid], root, env)
    tags.write_text(tags.read_text().replace("as queued", "edited after queueing"))
    status = run_queue(root, env | {PAUSE_ENV: "5"}, seconds=400)
    assert status.count("Success") == 2, status

    client = client_for(root)
    runs = runs_in_store(client)
    assert [r.data.tags.get("code") for r in runs] == ["as queued"] * 2
    assert sorted(r.data.params["optimizer.lr"] for r in runs) == ["0.003", "1e-06"]
    varied = {r.data.params["optimizer.lr"]: r.data.tags["varied"] for r in runs}
    assert varied == {"1e-06": "optimizer.lr,trainer.max_epochs", "0.003": "trainer.max_epochs"}
    assert len({r.data.tags["dvc.baseline"] for r in runs}) == 1
    for run_ in runs:  # whole: finished, every metric, its artifacts, its model registered
        run_id = run_.info.run_id
        assert run_.info.status == "FINISHED", run_id
        assert {"test_acc", "test_f1_9", "val_acc", "model_params"} <= run_.data.metrics.keys()
        assert [m.step for m in client.get_metric_history(run_id, "val_acc")] == [0]
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert {"config.yaml", "metrics.json", "confusion.png", "training.png"} <= artifacts
        assert client.search_model_versions(f"run_id='{run_id}'"), f"{run_id} not registered"
    worse, better = sorted(runs, key=lambda r: r.data.metrics["test_acc"])
    assert worse.data.metrics["test_acc"] < better.data.metrics["test_acc"]  # as set up
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, "champion")
    assert champion.run_id == better.info.run_id

    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env).stdout)
    code = {d["path"]: d["md5"] for d in baseline if d["path"].startswith("src/")}
    for rev in shown:
        for exp in rev.get("experiments") or []:
            ref = exp["revs"][0]["rev"]
            lock = yaml.safe_load(run(["git", "show", f"{ref}:dvc.lock"], root, env).stdout)
            deps = lock["stages"]["train"]["deps"]
            assert {d["path"]: d["md5"] for d in deps if d["path"] in code} == code
    accs = sorted(
        exp["revs"][0]["data"]["metrics"]["reports/metrics.json"]["data"]["test"]["acc"]
        for rev in shown
        for exp in rev.get("experiments") or []
    )
    assert accs == sorted(r.data.metrics["test_acc"] for r in runs)
