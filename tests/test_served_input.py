"""The served model refuses input that cannot be raw MNIST pixels, naming the images and the fix,
as an error `mlflow models serve` answers with HTTP 400; valid input gives the same logits."""

from __future__ import annotations

import json
from collections.abc import Iterator

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from mnist_pipeline.tracking import registry
from stores import fresh_store
from synthetic import synthetic_digits
from test_served_model import Registered, champion_in

pytestmark = pytest.mark.slow  # a model trained, logged and registered in a real store first

CHAMPION = f"models:/{registry.REGISTERED_MODEL}@champion"


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registered]:
    """A network registered and made champion, as `test_served_model` does, in a copied store."""
    tmp_path = tmp_path_factory.mktemp("served")
    with champion_in(tmp_path, fresh_store(tmp_path_factory, tmp_path)) as registered:
        yield registered


@pytest.fixture(scope="module")
def model(registered: Registered) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(CHAMPION)


def images(n: int = 6) -> np.ndarray:
    return synthetic_digits(n, seed=5)[0].astype(np.float32)


def with_nan() -> np.ndarray:
    x = images()
    x[2, 14, 14] = np.nan
    x[4, 0, 0] = np.inf
    return x


def out_of_range() -> np.ndarray:
    x = images()
    x[1, 3, 3] = 300.0
    x[3, 3, 3] = -1.0
    return x


def half_scaled() -> np.ndarray:
    x = images()
    x[[0, 5]] /= 255.0
    return x


BAD = {
    "nan": (with_nan, r"images \[2, 4\] hold NaN or infinite pixels"),
    "range": (out_of_range, r"images \[1, 3\] have pixels outside 0-255"),
    "unit": (lambda: images() / 255.0, r"images \[0, 1, 2, 3, 4, 5\] .* multiply them by 255"),
    "some unit": (half_scaled, r"images \[0, 5\] have all pixels within 0-1.*multiply them by 255"),
    "inverted": (lambda: 255.0 - images(), r"images \[0, 1, 2, 3, 4, 5\] .*\(255 - x\)"),
}


@pytest.mark.parametrize("make", [v[0] for v in BAD.values()], ids=BAD.keys())
def test_bad_pixels_are_refused_naming_the_images_and_the_fix(
    model: mlflow.pyfunc.PyFuncModel, make
) -> None:
    message = dict(BAD.values())[make]
    with pytest.raises(MlflowException, match=message) as info:
        model.predict(make().astype(np.float32))
    assert info.value.get_http_status_code() == 400
    assert "float pixels 0-255, white ink on a black background" in info.value.message
    assert "\n" not in info.value.message


def test_the_scoring_server_answers_400_with_the_message(
    model: mlflow.pyfunc.PyFuncModel,
) -> None:
    """What `mlflow models serve` runs for POST /invocations."""
    body = json.dumps({"inputs": (images(2) / 255.0).tolist()})
    schema = model.metadata.get_input_schema()
    with pytest.raises(MlflowException) as info:
        scoring_server.invocations(body, "application/json", model, schema)
    assert info.value.get_http_status_code() == 400
    assert "multiply them by 255" in info.value.message


def test_valid_pixels_give_the_networks_logits(
    registered: Registered,
    model: mlflow.pyfunc.PyFuncModel,
) -> None:
    x = images(8)
    x[3] = 0.0  # a blank image is valid input
    with torch.inference_mode():
        expected = registered.served(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6, atol=1e-6)
