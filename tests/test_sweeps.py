"""Hydra sweeps on other launchers and sweepers, for real: submitit jobs (each point its own
process), a SLURM submission as sbatch receives it, and an Optuna search on joblib workers.

Each sweep runs `python -m mnist_pipeline.adhoc -m` in a copy of the repo on tiny synthetic data
and reads the MLflow store back: one parent run, a child per point, the best point on the parent.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from pipeline_repo import client_for, run, runs_in_store
from stores import fresh_store
from synthetic import write_processed
from workspace import clean_env, copy_repo

pytestmark = pytest.mark.slow

# After `_self_` in the copy's conf/config.yaml: one short epoch a point (8 batches of 64).
TINY = {"data": {"batch_size": 64}, "trainer": {"max_epochs": 1, "enable_progress_bar": False}}
SWEEP = [sys.executable, "-m", "mnist_pipeline.adhoc", "-m"]


@pytest.fixture
def repo(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project as a clone has it, with processed synthetic data and a fresh MLflow store."""
    root = copy_repo(tmp_path / "repo")
    with open(root / "conf" / "config.yaml", "a") as f:
        f.write("\n# test settings\n" + yaml.safe_dump(TINY))
    write_processed(root / "data" / "processed", n_train=512)
    fresh_store(tmp_path_factory, root)
    return root


def family(root: Path) -> tuple[mlflow.entities.Run, list[mlflow.entities.Run]]:
    """The sweep's parent run and its children, by job number."""
    runs = runs_in_store(client_for(root))
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1, "a run outside the sweep's family"
    return parent, sorted(children, key=lambda r: int(r.data.tags["sweep.job"]))


def assert_best_recorded(parent: mlflow.entities.Run, children: list) -> mlflow.entities.Run:
    """The parent names the child with the best validation accuracy, its point and scores."""
    best = max(children, key=lambda c: (c.data.metrics["val_acc"], -int(c.data.tags["sweep.job"])))
    assert parent.data.tags["best.run_id"] == best.info.run_id
    assert parent.data.metrics["best_val_acc"] == best.data.metrics["val_acc"]
    assert parent.data.metrics["best_test_acc"] == best.data.metrics["test_acc"]
    point = dict(o.split("=", 1) for o in best.data.tags["sweep.point"].split())
    assert {k.removeprefix("best."): v for k, v in parent.data.params.items()} == point
    return best


def test_submitit_local_runs_each_point_as_its_own_job(repo: Path) -> None:
    run([*SWEEP, "hydra/launcher=submitit_local", "optimizer.lr=0.001,0.01"], repo, clean_env())

    parent, children = family(repo)
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert [c.data.params["optimizer.lr"] for c in children] == ["0.001", "0.01"]
    assert [c.info.run_name for c in children] == ["#0 optimizer.lr=0.001", "#1 optimizer.lr=0.01"]
    assert all(c.info.status == "FINISHED" and "test_acc" in c.data.metrics for c in children)
    assert_best_recorded(parent, children)
    # Two submitit jobs, each a process of its own with its own id, log and pickled result
    (sweep,) = (repo / "multirun").glob("*/*")
    jobs = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.name.isdigit())
    ids = [yaml.safe_load((sweep / str(n) / ".hydra" / "hydra.yaml").read_text()) for n in (0, 1)]
    assert sorted(i["hydra"]["job"]["id"] for i in ids) == jobs and len(set(jobs)) == 2
    for job in jobs:
        assert (sweep / ".submitit" / job / f"{job}_0_result.pkl").is_file(), job
    assert len(list(sweep.glob("*/model.pt"))) == 2  # in Hydra's folders, one per point;
    assert not (repo / "models" / "model.pt").exists()  # never in the DVC-tracked ones


def test_slurm_launcher_config_reaches_sbatch(repo: Path, tmp_path: Path) -> None:
    """No cluster here: an `sbatch` on PATH keeps the script submitit hands it and refuses the
    job, as a cluster with no such partition would (submitit also wants an `srun` on PATH). The
    sweep fails, naming the refusal, and its parent run is FAILED, not left RUNNING."""
    bin_dir, kept = tmp_path / "bin", tmp_path / "submitted.sh"
    bin_dir.mkdir()
    refuse = 'echo "sbatch: error: invalid partition specified" >&2; exit 1'
    for name, body in (("sbatch", f'cp "$1" {kept}; {refuse}'), ("srun", "exit 1")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{clean_env()['PATH']}")
    cmd = [*SWEEP, "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "model=lenet5,cnn"]
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode == 1
    assert "invalid partition specified" in result.stderr
    script = kept.read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=60",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32GB",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --export=ALL",
        "#SBATCH --array=0-1%2",  # both points at once (array_parallelism caps at 16)
    ):
        assert line in script.splitlines(), f"{line!r} not in\n{script}"
    assert f"{sys.executable} -u -m submitit.core._submit" in script
    parent, children = family(repo)
    assert parent.info.status == "FAILED" and not children
    assert parent.data.tags["sweep.overrides"] == "model=lenet5,cnn"
    assert parent.data.tags["sweep.launcher"] == "slurm"


def test_optuna_search_on_joblib_workers_records_the_best_trial(repo: Path) -> None:
    """Two trials at once on two joblib worker processes; the parent holds Optuna's best trial
    (its params and value) and Optuna's own results file."""
    search = ["hydra/sweeper=search", "hydra.sweeper.n_trials=2", "hydra/launcher=joblib"]
    run([*SWEEP, *search, "hydra.launcher.n_jobs=2"], repo, clean_env())

    parent, children = family(repo)
    assert parent.info.status == "FINISHED" and len(children) == 2
    (sweep,) = (repo / "multirun").glob("*/*")
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = assert_best_recorded(parent, children)
    assert parent.data.metrics["best_val_acc"] == results["best_value"]
    swept = {"optimizer.lr", "model.dropout", "model.channels.0", "model.channels.1"}
    assert swept | {"model.hidden.0"} == results["best_params"].keys()
    for key, value in results["best_params"].items():
        assert yaml.safe_load(parent.data.params[f"best.{key}"]) == value, key
    assert best.data.params["optimizer.lr"] == str(results["best_params"]["optimizer.lr"])
    client = client_for(repo)
    assert "optimization_results.yaml" in {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    # the two trials ran at once, in two processes
    (first, second) = sorted(children, key=lambda c: c.info.start_time)
    assert second.info.start_time < first.info.end_time, "the trials ran one after the other"
