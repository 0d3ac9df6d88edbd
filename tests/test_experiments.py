"""`dvc exp run` in a temporary copy of the repo: only what changed runs again, the experiment is
tracked and shown, and `champion` moves only to a strictly better model.

Synthetic MNIST-shaped data served over HTTP on 127.0.0.1; DVC, Hydra, Lightning and MLflow real.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipeline_repo import client_for, make_repo, outs, run, runs_in_store
from workspace import commit

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)  # three `dvc repro`/`exp run`s; the busiest slow test
def test_exp_run_with_override_reruns_only_train_and_evaluate(
    tmp_path: Path, http_mirror: str
) -> None:
    """Also the champion rule: a weak first model (a learning rate too small to learn), then a
    strictly better experiment takes `champion`. A worse one leaving it in place, with writers
    racing, is test_queue_race.py's."""
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
