"""What `mlflow.pyfunc.load_model("models:/mnist-classifier@champion")` runs: this file.

The registered model is logged as MLflow "models from code": the artifact holds this file, the
package's source (`code/mnist_pipeline`) and the weights file (`artifacts/model.pt`, the format of
`models/model.pt`), never a pickle. Loading executes this file and the package's code stored with
it, and reads the weights through `model_file.load`: `torch.load(weights_only=True)`, then only
the project's own network classes built from plain values. So a crafted weights file cannot run
code in whoever loads the model, as an unpickled `nn.Module` could.

It takes two kinds of input. Raw MNIST pixels, as the network sees them, give logits. Image files
(PNG, JPEG, ...: a column `image` of base64 text) go through `serving/images.py`, the same
preprocessing `python -m mnist_pipeline.predict` applies, and give each file's digit, its
calibrated probabilities and whether the model is not sure of it (`model/doubt.py`), so the
CLI, the REST server and Python agree on the same file.

Input that cannot be raw MNIST pixels is refused rather than answered: the network gives
confident logits for anything, so pixels scaled to 0-1 would all come out as one digit, inverted
images (dark ink on white) as noise, and a NaN pixel as NaN logits, with no sign of the mistake.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel, PythonModelContext

from mnist_pipeline.serving import loader
from mnist_pipeline.serving.images import ImageError, load

COLUMN = "image"  # where image files come, as base64 text (or bytes, from Python)
EXPECTED = (
    "float pixels 0-255, white ink on a black background, shape (N, 28, 28), or image files "
    f"(PNG, JPEG, ...) as base64 text in a column {COLUMN!r}"
)
SHOWN = 10  # image indices listed per problem; the rest are counted


class ServedModel(PythonModel):
    """Raw pixels (float32, (N, 28, 28), 0-255) in, logits out ((N, 10)): `Standardise` with the
    training statistics, then the network. Image files in (column `image`), a table out: `digit`,
    its `probability`, `not_sure` and all ten `probabilities`, one row per file."""

    def load_context(self, context: PythonModelContext) -> None:
        self.model = loader.load(context.artifacts["weights"])  # as predict and the demo do

    def predict(
        self,
        context: PythonModelContext,
        model_input: np.ndarray,  # or a DataFrame/dict of image files: the one hint MLflow
        # neither warns about nor validates against (no input schema is logged)
        params: dict[str, Any] | None = None,
    ) -> np.ndarray | pd.DataFrame:
        files = encoded_column(model_input)
        if files is not None:
            try:
                images = pixels(files)
            except ImageError as e:
                refuse(str(e))
            return answers(*self.model.judge(images))
        try:
            images = np.asarray(model_input, dtype=np.float32)
        except (TypeError, ValueError) as e:
            refuse(f"got {type(model_input).__name__} input that is not numbers ({e})")
        check_pixels(images)
        return self.logits(images)

    def logits(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.network(torch.as_tensor(images)).numpy()


def answers(probabilities: np.ndarray, unsure: np.ndarray) -> pd.DataFrame:
    """Each image's digit, its calibrated probability, whether the model is not sure of it, and
    the ten probabilities."""
    return pd.DataFrame(
        {
            "digit": probabilities.argmax(axis=1),
            "probability": probabilities.max(axis=1),
            "not_sure": unsure.astype(bool),
            "probabilities": [row.tolist() for row in probabilities],
        }
    )


def encoded_column(model_input: Any) -> list[Any] | None:
    """The values of the `image` column or key, or None when the input holds no such column."""
    columns = getattr(model_input, "columns", None)
    if columns is not None and COLUMN in columns:
        return list(model_input[COLUMN])
    if isinstance(model_input, dict) and COLUMN in model_input:
        value = model_input[COLUMN]
        return [value] if isinstance(value, str | bytes) else list(np.ravel(value))
    return None


def pixels(values: list[Any]) -> np.ndarray:
    """float32 (N, 28, 28) MNIST pixels from encoded image files; `ImageError` naming every bad
    one (`image <index>: <problem>`, the first few)."""
    images, problems = [], []
    for i, value in enumerate(values):
        try:
            images.append(load(file_bytes(value, f"image {i}"), f"image {i}"))
        except ImageError as e:
            problems.append(str(e))
    if problems:
        more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise ImageError("; ".join(problems[:SHOWN]) + more)
    if not images:
        raise ImageError(f"the column {COLUMN!r} holds no images")
    return np.stack(images)


def file_bytes(value: Any, name: str) -> bytes:
    """The file behind one cell: bytes as they are, a string as base64 (a data URL's prefix
    dropped)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise ImageError(f"{name}: a {type(value).__name__}, not base64 text or bytes")
    text = value.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ImageError(f"{name}: not base64 ({e})") from None


def check_pixels(images: np.ndarray) -> None:
    """Refuse input that cannot be raw MNIST pixels, naming the images and the fix.

    Raised as `MlflowException(INVALID_PARAMETER_VALUE)`: `mlflow models serve` answers it with
    HTTP 400 and this message, where any other exception becomes a 500 without it. An all-black
    image is valid (0-255 and 0-1 alike). "Mostly bright" is a median above 127.5: an MNIST digit
    fits a 20x20 box, at most 400 of the 784 pixels, so no true digit has more than half its
    pixels bright.
    """
    if images.ndim < 2 or images.size == 0 or int(np.prod(images.shape[1:])) != 28 * 28:
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


class Refused(MlflowException):
    """Input refused: HTTP 400 from `mlflow models serve`, with a message of at most `QUOTED`
    characters. The server prefixes it with the whole input ("Failed to predict data '...'"),
    which would send a 3 MB image back as a 4 MB error: the message is capped as it is set."""

    @property
    def message(self) -> str:
        return self._message

    @message.setter
    def message(self, text: str) -> None:
        self._message = capped(str(text))


QUOTED = 1000


def capped(text: str) -> str:
    """At most `QUOTED` characters: the start and, what says what went wrong, the end."""
    if len(text) <= QUOTED:
        return text
    head, tail = 120, QUOTED - 180  # 60 for the note between them
    left_out = len(text) - head - tail
    return f"{text[:head]} ... [{left_out:,} characters left out] ... {text[-tail:]}"


def refuse(problem: str) -> None:
    raise Refused(
        f"mnist-classifier takes {EXPECTED}; {problem}. Nothing was predicted.",
        error_code=INVALID_PARAMETER_VALUE,
    )


mlflow.models.set_model(ServedModel())
