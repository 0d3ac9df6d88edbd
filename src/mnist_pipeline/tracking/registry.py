"""The model registry: each trained model a version of `mnist-classifier` (alias `candidate`), and
the champion rule (`champion` moves only to a model with a better test accuracy)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import PIL
import torch
from mlflow.models import ModelSignature, infer_signature

import mnist_pipeline
from mnist_pipeline.model import model_file

REGISTERED_MODEL = "mnist-classifier"
# Read by MLflow as a file, not imported: importing it would call `mlflow.models.set_model`.
SERVED_MODEL = Path(__file__).with_name("served_model.py")


def log_model(weights: Path, example: np.ndarray) -> None:
    """Log the model file as an MLflow pyfunc model (raw 28x28 pixels in, logits out; or image
    files in, digits out) and register it as a new version of `mnist-classifier` with the alias
    `candidate`.

    The signature declares only the output: an input schema would make MLflow refuse one of the
    two kinds of input before the model sees it; `served_model.py` checks both itself.

    Logged "from code" (`served_model.py`), with the weights file as an artifact and the package's
    source alongside, so loading it unpickles nothing and works without the package installed;
    `mlflow.pytorch` would store a pickled `nn.Module`, which runs code when loaded.
    """
    served = model_file.load_served(weights)
    with torch.inference_mode():
        output = served(torch.from_numpy(example)).numpy()
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(SERVED_MODEL),
        artifacts={"weights": str(weights)},  # the name served_model.py reads
        code_paths=[str(Path(mnist_pipeline.__file__).parent)],
        signature=ModelSignature(outputs=infer_signature(example, output).outputs),
        input_example=example,
        pip_requirements=[
            f"torch=={torch.__version__.split('+')[0]}",
            f"numpy=={np.__version__}",
            f"pillow=={PIL.__version__}",
        ],
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
