"""MLflow tracking: one run per pipeline execution, opened by train and continued by evaluate.

The run id travels between the two stages in a small JSON file (`models/mlflow_run.json` for the
DVC pipeline), an output of train.
Only the resolved project config is logged as params, never the process environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import nn

import mnist_pipeline
from mnist_pipeline.atomic import write_json
from mnist_pipeline.config import describe, flatten, to_yaml
from mnist_pipeline.models import Standardise

DEFAULT_STORE = "mlflow.db"
REGISTERED_MODEL = "mnist-classifier"
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
PARENT_ENV = "MNIST_SWEEP_PARENT_RUN"  # set by sweep.MLflowParentRun for a sweep's jobs
UI = "http://127.0.0.1:5000"  # `make ui`, for links to runs in the local store


def project_root() -> Path:
    """The repository whose `mlflow.db` is the default store.

    DVC sets DVC_ROOT for every stage; for queued experiments, which run in a temporary copy
    under .dvc/tmp/exps, it points at the original repository, so their runs land beside the rest.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd())


def tracking_uri(configured: str | None = None) -> str:
    """`tracking.uri` if set, else $MLFLOW_TRACKING_URI, else SQLite `mlflow.db` in the repo root.

    The default is spelled out because MLflow's own fallback switches to a `./mlruns` file
    store when one exists, which MLflow 3 then refuses.
    """
    return (
        configured
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{project_root() / DEFAULT_STORE}"
    )


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or refuses a write; the message names the URI."""


def connect(tracking: DictConfig) -> None:
    """Point MLflow at the configured store and experiment, creating the experiment if needed.

    A server that does not answer fails here, within seconds, before any training: MLflow's own
    retries (7, with exponential backoff) would take minutes, so they are capped unless set.
    """
    uri = tracking_uri(tracking.uri)
    mlflow.set_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        for name, value in HTTP_LIMITS.items():
            os.environ.setdefault(name, value)
        try:
            mlflow.MlflowClient().search_experiments(max_results=1)
        except Exception as e:  # requests' and MLflow's errors alike: the server is not usable
            raise TrackingError(
                f"the MLflow tracking server at {uri} is not answering ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200]}). Start it, or unset MLFLOW_TRACKING_URI to "
                "track into mlflow.db here. Nothing was trained."
            ) from e
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(tracking.experiment) is None:
        # Artifacts beside the database, wherever the first run happens to execute.
        artifacts = Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns"
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # a concurrent run made it
            mlflow.create_experiment(tracking.experiment, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(tracking.experiment)


def git_state() -> dict[str, str]:
    """The commit the code came from, and whether the work tree differed from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout

    try:
        return {
            "git.commit": git("rev-parse", "HEAD").strip(),
            "git.dirty": str(bool(git("status", "--porcelain", "--untracked-files=no").strip())),
        }
    except (OSError, subprocess.CalledProcessError):
        return {}


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """What the MLflow UI can filter and group runs by: variant, overrides, commit, DVC experiment.

    Runs of one `dvc exp run --queue` grid share `dvc.baseline` (the commit they branch from);
    `varied` lists the keys a run sets away from conf/'s defaults, for filtering.
    """
    described = describe(cfg)
    changed = described["overrides"]
    tags = {
        "model": described["model"],
        "overrides": " ".join(changed) or "(defaults)",
        "varied": ",".join(sorted(o.split("=")[0] for o in changed)) or "(defaults)",
        **git_state(),
    }
    for env, tag in (("DVC_EXP_NAME", "dvc.experiment"), ("DVC_EXP_BASELINE_REV", "dvc.baseline")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def processed_data_digest(data_dir: Path) -> str:
    """The content hash DVC recorded for `data_dir` in dvc.lock (the data this run trained on)."""
    lock = Path("dvc.lock")
    if lock.is_file():
        for out in yaml.safe_load(lock.read_text())["stages"].get("preprocess", {}).get("outs", []):
            if Path(out["path"]) == data_dir:
                return out["md5"].removesuffix(".dir")
    return hashlib.md5((data_dir / "stats.json").read_bytes()).hexdigest()  # not run by DVC


def log_dataset(data_dir: Path) -> None:
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    source = LocalArtifactDatasetSource(str(data_dir.resolve()))
    dataset = MetaDataset(source, name="mnist-processed", digest=processed_data_digest(data_dir))
    mlflow.log_input(dataset, context="training")


@contextmanager
def new_run(
    cfg: DictConfig, data_dir: Path, run_file: Path, resume_id: str | None = None
) -> Iterator[str | None]:
    """Open a run holding the config (params, `config.yaml`, tags, dataset); record its id.

    With `resume_id`, reopen that run instead (an interrupted training going on). Under a Hydra
    sweep the run nests under the sweep's parent run. DDP's extra processes (Lightning starts
    them with RANK or LOCAL_RANK set) track nothing.
    """
    if os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) != "0":
        yield None
        return
    connect(cfg.tracking)
    if resume_id:
        opened = mlflow.start_run(run_id=resume_id)
    else:
        opened = mlflow.start_run(
            run_name=os.environ.get("DVC_EXP_NAME"),
            parent_run_id=os.environ.get(PARENT_ENV),
            tags=run_tags(cfg),
        )
    status = "FAILED"
    try:
        if resume_id:
            mlflow.set_tag("resumed", "true")
        else:
            params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
            mlflow.log_params({key: str(value) for key, value in params.items()})
            mlflow.log_text(to_yaml(cfg), "config.yaml")
            log_dataset(data_dir)
        yield opened.info.run_id
        write_json(run_file, {"run_id": opened.info.run_id, "experiment": cfg.tracking.experiment})
        status = "FINISHED"
    finally:
        with contextlib.suppress(Exception):  # a store gone away must not hide the real error
            mlflow.end_run(status)


@contextmanager
def resume_run(cfg: DictConfig, run_file: Path) -> Iterator[str]:
    """Reopen the run that train recorded, so evaluate's results land beside train's."""
    run_id = json.loads(run_file.read_text())["run_id"]
    connect(cfg.tracking)
    with mlflow.start_run(run_id=run_id):
        yield run_id


def log_test_results(headline: dict[str, float], per_class: dict) -> None:
    """Test metrics, overall (`test_acc`) and per class (`test_f1_3`), in one call."""
    metrics = {f"test_{name}": value for name, value in headline.items()}
    for cls, scores in per_class.items():
        metrics |= {f"test_{name}_{cls}": scores[name] for name in ("precision", "recall", "f1")}
    mlflow.log_metrics(metrics)


def log_artifacts(folder: Path, names: list[str]) -> None:
    for name in names:
        mlflow.log_artifact(str(folder / name))


def log_model(model: nn.Module, stats: dict[str, float], example: np.ndarray) -> None:
    """Log the network behind a `Standardise` layer (raw 28x28 pixels in, logits out) and register
    it as a new version of `mnist-classifier` with the alias `candidate`.

    The package's code travels with the model, so `mlflow.pyfunc.load_model` works without it
    installed.
    """
    import mlflow.pytorch  # here, not at the top: it imports Lightning, which evaluate avoids
    from mlflow.models import infer_signature

    served = nn.Sequential(Standardise(stats["mean"], stats["std"]), model).eval()
    with torch.inference_mode():
        output = served(torch.from_numpy(example)).numpy()
    info = mlflow.pytorch.log_model(
        served,
        name="model",
        signature=infer_signature(example, output),
        input_example=example,
        code_paths=[str(Path(mnist_pipeline.__file__).parent)],
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"],
    )
    version = mlflow.register_model(info.model_uri, REGISTERED_MODEL)
    mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, "candidate", version.version)


def promote_if_better(run_id: str, test_acc: float) -> bool:
    """Move `champion` to this run's model version if its test accuracy beats the champion's."""
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{REGISTERED_MODEL}' and run_id='{run_id}'")
    if not versions:
        return False
    try:
        champion = client.get_model_version_by_alias(REGISTERED_MODEL, "champion")
        best = client.get_run(champion.run_id).data.metrics.get("test_acc", -1.0)
    except mlflow.exceptions.MlflowException:  # no champion yet
        best = -1.0
    if test_acc <= best:
        return False
    client.set_registered_model_alias(REGISTERED_MODEL, "champion", versions[0].version)
    return True


def run_link(run_id: str) -> dict[str, str]:
    """The run's id and its page in the MLflow UI, for reports/metrics.json."""
    run = mlflow.get_run(run_id)
    uri = mlflow.get_tracking_uri()
    base = uri.rstrip("/") if uri.startswith("http") else UI
    return {"run_id": run_id, "url": f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"}
