"""The model registry: each trained model a version of `mnist-classifier` (alias `candidate`), and
the champion rule (`champion` moves only to a model with a better test accuracy)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import torch
from torch import nn

import mnist_pipeline
from mnist_pipeline.model.networks import Standardise

REGISTERED_MODEL = "mnist-classifier"


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
