"""What `mlflow.pyfunc.load_model("models:/mnist-classifier@champion")` runs: this file.

The registered model is logged as MLflow "models from code": the artifact holds this file, the
package's source (`code/mnist_pipeline`) and the weights file (`artifacts/model.pt`, the format of
`models/model.pt`), never a pickle. Loading executes this file and the package's code stored with
it, and reads the weights through `model_file.load`: `torch.load(weights_only=True)`, then only
the project's own network classes built from plain values. So a crafted weights file cannot run
code in whoever loads the model, as an unpickled `nn.Module` could.

Input that cannot be raw MNIST pixels is refused rather than answered: the network gives
confident logits for anything, so pixels scaled to 0-1 would all come out as one digit, inverted
images (dark ink on white) as noise, and a NaN pixel as NaN logits, with no sign of the mistake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

from mnist_pipeline.model import model_file

EXPECTED = "float pixels 0-255, white ink on a black background, shape (N, 28, 28)"
SHOWN = 10  # image indices listed per problem; the rest are counted


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
        images = np.asarray(model_input, dtype=np.float32)
        check_pixels(images)
        with torch.inference_mode():
            return self.network(torch.as_tensor(images)).numpy()


def check_pixels(images: np.ndarray) -> None:
    """Refuse input that cannot be raw MNIST pixels, naming the images and the fix.

    Raised as `MlflowException(INVALID_PARAMETER_VALUE)`: `mlflow models serve` answers it with
    HTTP 400 and this message, where any other exception becomes a 500 without it. An all-black
    image is valid (0-255 and 0-1 alike). "Mostly bright" is a median above 127.5: an MNIST digit
    fits a 20x20 box, at most 400 of the 784 pixels, so no true digit has more than half its
    pixels bright.
    """
    if images.ndim < 2 or int(np.prod(images.shape[1:])) != 28 * 28:
        refuse(f"got an array of shape {images.shape}")
    flat = images.reshape(len(images), -1)
    finite = np.isfinite(flat).all(axis=1)
    with np.errstate(invalid="ignore"):
        in_range = finite & (flat.min(axis=1) >= 0) & (flat.max(axis=1) <= 255)
        unit = in_range & (flat.max(axis=1) > 0) & (flat.max(axis=1) <= 1)
        bright = in_range & ~unit & (np.median(flat, axis=1) > 127.5)
    problems = [
        (~finite, "hold NaN or infinite pixels: replace them with numbers in 0-255"),
        (finite & ~in_range, "have pixels outside 0-255: clip or rescale them into 0-255"),
        (unit, "have all pixels within 0-1, as if scaled down: multiply them by 255"),
        (bright, "are mostly bright, dark ink on white: invert them (255 - x)"),
    ]
    found = [f"images {indices(mask)} {fix}" for mask, fix in problems if mask.any()]
    if found:
        refuse(f"of {len(images)} images, " + "; ".join(found))


def indices(mask: np.ndarray) -> str:
    where = np.flatnonzero(mask).tolist()
    more = f" and {len(where) - SHOWN} more" if len(where) > SHOWN else ""
    return f"{where[:SHOWN]}{more}"


def refuse(problem: str) -> None:
    raise MlflowException(
        f"mnist-classifier takes {EXPECTED}; {problem}. Nothing was predicted.",
        error_code=INVALID_PARAMETER_VALUE,
    )


mlflow.models.set_model(ServedModel())
