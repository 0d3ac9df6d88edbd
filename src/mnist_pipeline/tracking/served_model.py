"""What `mlflow.pyfunc.load_model("models:/mnist-classifier@champion")` runs: this file.

The registered model is logged as MLflow "models from code": the artifact holds this file, the
package's source (`code/mnist_pipeline`) and the weights file (`artifacts/model.pt`, the format of
`models/model.pt`), never a pickle. Loading executes this file and the package's code stored with
it, and reads the weights through `model_file.load`: `torch.load(weights_only=True)`, then only
the project's own network classes built from plain values. So a crafted weights file cannot run
code in whoever loads the model, as an unpickled `nn.Module` could.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel, PythonModelContext

from mnist_pipeline.model import model_file


class ServedModel(PythonModel):
    """Raw pixels in (float32, (N, 28, 28), 0-255), logits out ((N, 10)): `Standardise` with the
    training statistics, then the network."""

    def load_context(self, context: PythonModelContext) -> None:
        self.network = model_file.load_served(Path(context.artifacts["weights"]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: np.ndarray,  # a type MLflow infers no schema from: the logged signature rules
        params: dict[str, Any] | None = None,
    ) -> np.ndarray:
        pixels = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.inference_mode():
            return self.network(pixels).numpy()


mlflow.models.set_model(ServedModel())
