"""MLflow tracking: one run per pipeline execution, opened by train and continued by evaluate.

The run id travels between the two stages in `models/mlflow_run.json`, a DVC output of train.
Only the resolved project config is logged as params, never the process environment.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

import mnist_pipeline
from mnist_pipeline.atomic import write_json
from mnist_pipeline.config import flatten, to_yaml
from mnist_pipeline.models import Standardise

RUN_FILE = Path("models/mlflow_run.json")
DEFAULT_STORE = "mlflow.db"


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


def _connect(tracking: DictConfig) -> None:
    uri = tracking_uri(tracking.uri)
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(tracking.experiment) is None:
        # Artifacts beside the database, wherever the first run happens to execute.
        artifacts = Path(uri.removeprefix("sqlite:///")).parent / "mlruns"
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # a concurrent run made it
            mlflow.create_experiment(tracking.experiment, artifact_location=artifacts.as_uri())
    mlflow.set_experiment(tracking.experiment)


@contextmanager
def new_run(cfg: DictConfig) -> Iterator[str | None]:
    """Open a run holding the config (as params and `config.yaml`); record its id in RUN_FILE.

    DDP's extra processes (Lightning starts them with LOCAL_RANK set) track nothing.
    """
    if os.environ.get("LOCAL_RANK", "0") != "0":
        yield None
        return
    _connect(cfg.tracking)
    with mlflow.start_run(run_name=os.environ.get("DVC_EXP_NAME")) as run:
        params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        mlflow.log_params({key: str(value) for key, value in params.items()})
        mlflow.log_text(to_yaml(cfg), "config.yaml")
        yield run.info.run_id
        write_json(RUN_FILE, {"run_id": run.info.run_id, "experiment": cfg.tracking.experiment})


@contextmanager
def resume_run(cfg: DictConfig, run_file: Path = RUN_FILE) -> Iterator[str]:
    """Reopen the run that train recorded, so evaluate's results land beside train's."""
    run_id = json.loads(run_file.read_text())["run_id"]
    _connect(cfg.tracking)
    with mlflow.start_run(run_id=run_id):
        yield run_id


def log_test_results(headline: dict[str, float], per_class: dict, reports_dir: Path) -> None:
    """Test metrics, overall (`test_acc`) and per class (`test_f1_3`), and the report files."""
    metrics = {f"test_{name}": value for name, value in headline.items()}
    for cls, scores in per_class.items():
        metrics |= {f"test_{name}_{cls}": scores[name] for name in ("precision", "recall", "f1")}
    mlflow.log_metrics(metrics)
    for name in ("metrics.json", "per_class.json", "confusion.png"):
        mlflow.log_artifact(str(reports_dir / name))


def log_model(model: nn.Module, stats: dict[str, float], example: np.ndarray) -> None:
    """Log the network behind a `Standardise` layer: it takes raw 28x28 pixels, returns logits.

    The package's code travels with the model, so `mlflow.pyfunc.load_model` works without it
    installed.
    """
    import mlflow.pytorch  # here, not at the top: it imports Lightning, which evaluate avoids
    from mlflow.models import infer_signature

    served = nn.Sequential(Standardise(stats["mean"], stats["std"]), model).eval()
    with torch.inference_mode():
        output = served(torch.from_numpy(example)).numpy()
    mlflow.pytorch.log_model(
        served,
        name="model",
        signature=infer_signature(example, output),
        input_example=example,
        code_paths=[str(Path(mnist_pipeline.__file__).parent)],
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}"],
    )
