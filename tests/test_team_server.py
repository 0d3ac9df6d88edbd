"""`make server` for a team, for real: MLflow over a PostgreSQL server and an S3-compatible store
(moto), all on 127.0.0.1. The pipeline, unchanged, logs to it with only MLFLOW_TRACKING_URI set
(a URI with a password in it) and no S3 keys; everything lands in PostgreSQL and the bucket, and
no credential reaches what MLflow, DVC or git keep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import mlflow
import numpy as np
import psycopg
import pytest
import yaml

from pipeline_repo import make_repo, run, runs_in_store
from servers import free_port, stop_mlflow_server, wait_until_healthy
from synthetic import synthetic_digits
from team_servers import S3, S3_KEYS, postgres_server, s3_server
from workspace import REPO

pytestmark = pytest.mark.slow

CLIENT_SECRET = "tracking-token-Zr83Hq"  # in the client's MLFLOW_TRACKING_URI
PG_SECRET = "pg-password-Vn52Kd"  # in the server's BACKEND_STORE_URI
SECRETS = (CLIENT_SECRET, PG_SECRET, S3_KEYS["AWS_SECRET_ACCESS_KEY"])


@dataclass(frozen=True)
class Logged:
    url: str  # the server, without credentials
    db: str  # PostgreSQL's URI, with its password
    s3: S3
    repo: Path
    env: dict[str, str]  # the client's: tracking URI with a password, no S3 keys
    output: str  # what `dvc repro` and the sweep printed
    server_log: Path
    server_cmdlines: list[bytes]  # what `ps` shows of the server's processes
    aliases: dict[str, str]  # the run behind `candidate` and `champion` after `dvc repro`


def start_make_server(port: int, db: str, artifacts: str, env: dict[str, str], log: Path):
    """`make server` as a team runs it; URIs through the environment, as the recipe says."""
    venv = Path(sys.executable).parent.parent
    with log.open("w") as out:
        server = subprocess.Popen(
            ["make", "-s", "-C", str(REPO), f"VENV={venv}", "-o", f"{venv}/.installed", "server",
             f"PORT={port}", "WORKERS=1"],
            env=env | {"BACKEND_STORE_URI": db, "ARTIFACTS_DESTINATION": artifacts},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return wait_until_healthy(server, port, seconds=180)  # a fresh database is migrated first


def cmdlines(group: int) -> list[bytes]:
    pids = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout
    return [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids.split()]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, http_mirror: str) -> Iterator[Logged]:
    """One `dvc repro` and one Hydra sweep against `make server`."""
    tmp = tmp_path_factory.mktemp("team-server")
    with postgres_server("mlflow", PG_SECRET) as pg, s3_server() as s3:
        db = pg.replace("mlflow@", f"mlflow:{PG_SECRET}@")
        server_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
        server_env |= S3_KEYS | {"MLFLOW_S3_ENDPOINT_URL": s3.endpoint}
        port, log = free_port(), tmp / "server.log"
        started = time.monotonic()
        server = start_make_server(port, db, f"s3://{s3.bucket}/mlflow", server_env, log)
        print(f"\nmake server ready (fresh database): {time.monotonic() - started:.1f} s")
        try:
            url = f"http://127.0.0.1:{port}"
            repo, env = make_repo(tmp / "repo", http_mirror)
            env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
            env["MLFLOW_TRACKING_URI"] = url.replace("//", f"//alice:{CLIENT_SECRET}@")
            started = time.monotonic()
            repro = run(["dvc", "repro"], repo, env)
            print(f"dvc repro against make server: {time.monotonic() - started:.1f} s")
            client = mlflow.MlflowClient(url)
            aliases = {  # before the sweep registers models of its own
                alias: client.get_model_version_by_alias("mnist-classifier", alias).run_id
                for alias in ("candidate", "champion")
            }
            # the sweep names the server in its config instead, token and all
            sweep = ["-m", "optimizer.lr=0.001,0.003", "trainer.max_epochs=1"]
            sweep.append(f"tracking.uri={env['MLFLOW_TRACKING_URI']}")
            no_env = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
            swept = run([sys.executable, "-m", "mnist_pipeline.adhoc", *sweep], repo, no_env)
            output = repro.stdout + repro.stderr + swept.stdout + swept.stderr
            yield Logged(url, db, s3, repo, env, output, log, cmdlines(server.pid), aliases)
        finally:
            stop_mlflow_server(server)


def split_runs(logged: Logged) -> tuple[mlflow.entities.Run, mlflow.entities.Run, list]:
    """The pipeline's run, the sweep's parent run and its children."""
    runs = runs_in_store(mlflow.MlflowClient(logged.url))
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    (parent,) = [r for r in runs if "sweep.overrides" in r.data.tags]
    swept = {parent.info.run_id} | {c.info.run_id for c in children}
    (pipeline,) = [r for r in runs if r.info.run_id not in swept]
    return pipeline, parent, children


def test_the_pipeline_logs_everything_to_postgresql_and_the_bucket(logged: Logged) -> None:
    client = mlflow.MlflowClient(logged.url)
    pipeline, _, _ = split_runs(logged)
    run_id = pipeline.info.run_id
    assert pipeline.info.status == "FINISHED"
    assert pipeline.data.params["optimizer.lr"] == "0.003"
    assert pipeline.data.tags["model"] == "lenet5"
    assert {"test_acc", "test_macro_f1", "test_f1_3", "model_macs"} <= pipeline.data.metrics.keys()
    for name in ("train_loss", "val_loss", "val_acc"):
        assert [m.step for m in client.get_metric_history(run_id, name)] == [0, 1, 2, 3], name
    figures = {"confusion.png", "training.png", "mistakes.png", "config.yaml", "metrics.json"}
    assert figures <= {a.path for a in client.list_artifacts(run_id)}

    lock = yaml.safe_load((logged.repo / "dvc.lock").read_text())
    processed = next(
        o for o in lock["stages"]["preprocess"]["outs"] if o["path"] == "data/processed"
    )
    (dataset,) = pipeline.inputs.dataset_inputs
    assert dataset.dataset.digest == processed["md5"].removesuffix(".dir")

    assert logged.aliases == {"candidate": run_id, "champion": run_id}
    metrics = json.loads((logged.repo / "reports" / "metrics.json").read_text())
    assert metrics["mlflow"] == {"run_id": run_id, "url": metrics["mlflow"]["url"]}
    assert metrics["mlflow"]["url"].startswith(f"{logged.url}/#/experiments/")

    # where it went: runs in PostgreSQL, artifacts in the bucket, nothing on the client's disk
    with psycopg.connect(logged.db) as db:
        stored = {row[0] for row in db.execute("SELECT run_uuid FROM runs")}
    assert run_id in stored
    keys = boto3.client(
        "s3", endpoint_url=logged.s3.endpoint, region_name="us-east-1",
        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    ).list_objects_v2(Bucket=logged.s3.bucket, Prefix="mlflow/")["Contents"]  # fmt: skip
    in_bucket = {k["Key"] for k in keys}
    assert any(run_id in k and k.endswith("/confusion.png") for k in in_bucket), in_bucket
    assert not (logged.repo / "mlflow.db").exists() and not (logged.repo / "mlruns").exists()


def test_a_sweep_is_a_parent_run_with_a_child_per_point(logged: Logged) -> None:
    _, parent, children = split_runs(logged)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert sorted(c.data.params["optimizer.lr"] for c in children) == ["0.001", "0.003"]
    masked = logged.url.replace("//", "//***@")  # the URI as recorded: the token is used, not kept
    assert {c.data.params["tracking.uri"] for c in children} == {masked}
    assert all(f"tracking.uri={masked}" in c.data.tags["overrides"] for c in children)


def test_the_champion_loads_from_the_server_with_no_s3_keys(
    logged: Logged, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")  # nor ~/.aws
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged.env["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model("models:/mnist-classifier@champion")
    images, labels = synthetic_digits(50, seed=2)
    assert (np.argmax(model.predict(images.astype(np.float32)), axis=1) == labels).mean() >= 0.9


def test_no_credential_reaches_what_mlflow_dvc_or_git_keep(logged: Logged, tmp_path: Path) -> None:
    client = mlflow.MlflowClient(logged.url)
    runs = runs_in_store(client)
    pipeline, _, _ = split_runs(logged)
    config = client.download_artifacts(pipeline.info.run_id, "config.yaml", str(tmp_path))
    kept = {
        "params and tags": json.dumps([[r.data.params, r.data.tags] for r in runs]),
        "config.yaml": Path(config).read_text(),
        **{str(p): p.read_text() for p in logged.repo.glob("*/*.json")},
        "dvc.lock, params.yaml": (logged.repo / "dvc.lock").read_text()
        + (logged.repo / "params.yaml").read_text(),
        "what the stages printed": logged.output,
        "the server's log": logged.server_log.read_text(),
        "the server's command lines": b" ".join(logged.server_cmdlines).decode(),
    }
    assert len(logged.server_cmdlines) >= 2  # make's shell is gone (exec): mlflow and uvicorn
    leaks = [(where, s) for where, text in kept.items() for s in SECRETS if s in text]
    assert not leaks
