"""Training on several machines: two "nodes" on 127.0.0.1, each one CPU process, over gloo.

The train stage runs as docs/cluster.md says: under `torchrun` (c10d rendezvous), and under
SLURM (two plain processes given the variables `srun` sets). Only global rank 0 tracks and writes;
evaluate then runs once. Tiny synthetic data with an odd number of validation examples (61), so a
validation that dropped or padded one would not match the single-process evaluation.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from mnist_pipeline.config.params import compose, to_yaml
from mnist_pipeline.data.tensors import TensorBatches
from servers import free_port
from stores import fresh_store
from synthetic import write_processed
from workspace import REPO, clean_env

N_TRAIN, N_VAL = 256, 61  # 128 per process, 4 steps of 32; validation split 31 + 30
TRAIN_STAGE = ["mnist_pipeline.train", "--params", "params.yaml"]  # dvc.yaml's train cmd
HANG = 240  # s: a run still going after this is taken as hung (gloo itself waits 30 minutes)
TWO_NODES = [
    "trainer=ddp_cpu",
    "trainer.devices=1",
    "trainer.num_nodes=2",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "data.batch_size=32",
]


def workspace(root: Path, factory: pytest.TempPathFactory, overrides: list[str]) -> Path:
    """What a stage needs in its working directory: conf/ (the run's tags read it back), the
    processed data, params.yaml and an MLflow store."""
    shutil.copytree(REPO / "conf", root / "conf")
    write_processed(root / "data" / "processed", N_TRAIN, N_VAL)
    (root / "params.yaml").write_text(to_yaml(compose(overrides, conf_dir=REPO / "conf")))
    fresh_store(factory, root)
    return root


def run_nodes(root: Path, commands: list[list[str]], envs: list[dict[str, str]]) -> list[str]:
    """Start one process per node at once, wait for all; each one's exit code and output. A run
    still going after HANG seconds is killed and fails the test."""
    logs = [root / f"node{i}.log" for i in range(len(commands))]
    procs = []
    for command, env, log in zip(commands, envs, logs, strict=True):
        with open(log, "wb") as out:
            started = subprocess.Popen(
                command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            procs.append(started)
    try:
        for proc in procs:
            proc.wait(timeout=HANG)
    except subprocess.TimeoutExpired:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the node's launcher and its worker
        pytest.fail(f"the nodes did not finish within {HANG} s (hung?): {tail(logs)}")
    return [f"exit {p.returncode}\n{log.read_text()}" for p, log in zip(procs, logs, strict=True)]


def tail(logs: list[Path]) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)


def torchrun(root: Path, env: dict[str, str]) -> list[str]:
    """docs/cluster.md's torchrun recipe, once per node: one command, the rendezvous on node 0."""
    endpoint = f"127.0.0.1:{free_port()}"
    command = ["torchrun", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d"]
    command += ["--rdzv-endpoint", endpoint, "-m", *TRAIN_STAGE]
    return run_nodes(root, [command, command], [env, env])


def slurm_env(env: dict[str, str], rank: int, job_id: str) -> dict[str, str]:
    """What `srun` sets for task `rank` of `sbatch --nodes=2 --ntasks-per-node=1` (one task a
    node). Lightning takes the main node from SLURM_NODELIST, the port from the job id."""
    return env | {
        "SLURM_JOB_ID": job_id,
        "SLURM_JOB_NAME": "train.sbatch",
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": str(rank),
    }


def slurm_job_id() -> str:
    """A job id whose port (Lightning: 15000 + its last 4 digits) is free here."""
    for last in range(os.getpid() % 9000, 10000):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", 15000 + last))
            return f"7{last:04d}"
    raise RuntimeError("no free port in 15000-24999")


def runs(root: Path) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mnist")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def model_versions(root: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    return client.search_model_versions("name='mnist-classifier'")


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The train stage under torchrun on two nodes, then evaluate once, as the recipe says."""
    root = workspace(tmp_path_factory.mktemp("torchrun"), tmp_path_factory, TWO_NODES)
    env = clean_env(OMP_NUM_THREADS="1")  # one core a "node"
    outputs = torchrun(root, env)
    assert all(out.startswith("exit 0") for out in outputs), "\n".join(outputs)[-6000:]
    evaluated = subprocess.run(
        [sys.executable, "-m", "mnist_pipeline.evaluate"], cwd=root, env=env,
        capture_output=True, text=True, timeout=HANG,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    return root, outputs


@pytest.mark.slow
def test_two_torchrun_nodes_train_evaluate_and_register_one_model(
    two_nodes: tuple[Path, list[str]],
) -> None:
    root, outputs = two_nodes
    assert not any("Traceback" in out for out in outputs), "\n".join(outputs)[-6000:]
    (run,) = runs(root)  # rank 1 opened none
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.num_nodes"] == "2"
    assert "test_acc" in run.data.metrics  # evaluate logged into train's run
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [0, 1]
    (version,) = model_versions(root)
    assert version.run_id == run.info.run_id
    record = json.loads((root / "models" / "mlflow_run.json").read_text())
    assert record["run_id"] == run.info.run_id
    assert len((root / "reports" / "training.csv").read_text().splitlines()) == 1 + 2


@pytest.mark.slow
def test_two_nodes_count_every_validation_example_once(two_nodes: tuple[Path, list[str]]) -> None:
    """The synthetic val and test splits are the same 61 digits: the last epoch's validation,
    split over two processes, must equal evaluate's single-process score of the saved model."""
    root, _ = two_nodes
    header, *rows = (root / "reports" / "training.csv").read_text().splitlines()
    last = dict(zip(header.split(","), map(float, rows[-1].split(",")), strict=True))
    test = json.loads((root / "reports" / "metrics.json").read_text())["test"]
    assert last["val_acc"] == pytest.approx(test["acc"], abs=1e-6)  # one example: 0.016
    assert last["val_loss"] == pytest.approx(test["loss"], rel=1e-5)


@pytest.mark.slow
def test_slurm_tasks_train_with_one_run_tracked_by_global_rank_0(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two processes with the variables srun gives the tasks of a 2-node job: Lightning's
    SLURMEnvironment ranks them (SLURM_PROCID), and only rank 0 tracks: neither sets RANK or
    LOCAL_RANK, so a process cannot tell it is not rank 0 before the Trainer says so."""
    root = workspace(tmp_path_factory.mktemp("slurm"), tmp_path_factory, TWO_NODES)
    env, job = clean_env(OMP_NUM_THREADS="1"), slurm_job_id()
    command = [sys.executable, "-m", *TRAIN_STAGE]
    outputs = run_nodes(root, [command, command], [slurm_env(env, r, job) for r in (0, 1)])
    assert all(out.startswith("exit 0") for out in outputs), "\n".join(outputs)[-6000:]
    (run,) = runs(root)
    assert run.info.status == "FINISHED"
    assert len(model_versions(root)) == 1
    assert (root / "models" / "model.pt").is_file()


@pytest.mark.slow
def test_a_nan_on_one_node_stops_every_node_with_the_clear_error(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Rank 1 alone sees a NaN loss, in the last step of epoch 0 (rank 0's losses stay finite
    until the NaN gradients reach it after that step): both stop at once, each with the one
    paragraph naming the fix, and nothing is saved."""
    overrides = [*TWO_NODES, "model._target_=diverging.NanOnRank1", "+model.nan_at=4"]
    root = workspace(tmp_path_factory.mktemp("nan"), tmp_path_factory, overrides)
    path = os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")]))
    env = clean_env(OMP_NUM_THREADS="1", PYTHONPATH=path)
    outputs = torchrun(root, env)
    for out in outputs:
        assert not out.startswith("exit 0"), out[-3000:]
        assert "error: the training loss became nan in epoch 0" in out, out[-3000:]
        assert "Lower optimizer.lr" in out
    (run,) = runs(root)
    assert run.info.status == "FAILED"
    assert not (root / "models" / "model.pt").exists()
    assert model_versions(root) == []


@pytest.mark.parametrize("world", [2, 3, 4])
def test_validation_shards_serve_every_example_once(world: int) -> None:
    """Unlike training shards (equally long, the remainder left out), validation shards split
    the set exactly: 61 examples over 2 processes are 31 + 30, none left out, none twice."""
    images, labels = torch.zeros(N_VAL, 1, 2, 2), torch.arange(N_VAL)
    shards = [TensorBatches(images, labels, 8, rank=r, world=world) for r in range(world)]
    served = [torch.cat([y for _, y in shard]) for shard in shards]
    assert sorted(torch.cat(served).tolist()) == list(range(N_VAL))
    assert [len(shard) for shard in shards] == [-(-len(s) // 8) for s in served]


@pytest.mark.parametrize("trainer", ["ddp", "ddp_cpu"])
def test_num_nodes_is_a_trainer_setting(trainer: str) -> None:
    """`trainer.num_nodes` overrides without `+`; Lightning counts every node's processes."""
    from hydra.utils import instantiate

    overrides = [f"trainer={trainer}", "trainer.num_nodes=2", "trainer.devices=2"]
    cfg = compose([*overrides, "trainer.accelerator=cpu"], conf_dir=REPO / "conf").trainer
    built = instantiate(cfg, logger=False, precision="32-true")
    assert built.num_nodes == 2 and built.world_size == 4
    assert type(built.strategy).__name__ == "DDPStrategy"


def test_the_sbatch_script_runs_the_train_stage_under_srun() -> None:
    """cluster/train.sbatch is valid bash and starts dvc.yaml's own train command under srun,
    sized by the allocation, then evaluate once."""
    import yaml

    script = REPO / "cluster" / "train.sbatch"
    subprocess.run(["bash", "-n", script], check=True)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    # The commands as dvc.yaml gives them, with PYTHONPATH exported once for srun.
    stage, evaluate = (
        stages[n]["cmd"].removeprefix("PYTHONPATH=src ") for n in ["train", "evaluate"]
    )
    text = script.read_text()
    assert text.index("export PYTHONPATH=src") < text.index(f"srun --kill-on-bad-exit=1 {stage}\n")
    assert "trainer.num_nodes=${SLURM_NNODES}" in text
    assert "trainer.devices=${SLURM_NTASKS_PER_NODE}" in text
    assert text.index(stage) < text.index(f"\n{evaluate}\n")
