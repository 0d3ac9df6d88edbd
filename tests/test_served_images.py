"""The registered model takes image files too (base64 in a column `image`) through the same
preprocessing as `python -m mnist_pipeline.predict`: Python, the CLI and `mlflow models serve`
give the same answer for the same file, and pixels still give logits."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from mnist_pipeline.serving.images import load
from mnist_pipeline.tracking import registry
from servers import free_port, wait_until_healthy
from stores import fresh_store
from synthetic import synthetic_digits
from test_images import encoded, page
from test_served_model import Registered, champion_in
from workspace import clean_env

CHAMPION = f"models:/{registry.REGISTERED_MODEL}@champion"
FILES = {"four.png": encoded(page()), "four.jpg": encoded(page(ink="white", paper="black"), "JPEG")}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registered, Path]]:
    """A network registered and made champion in a fresh store; the store's path."""
    tmp_path = tmp_path_factory.mktemp("served_images")
    db = fresh_store(tmp_path_factory, tmp_path)
    with champion_in(tmp_path, db) as registered:
        yield registered, db


@pytest.fixture(scope="module")
def model(store: tuple[Registered, Path]) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(CHAMPION)


def expected(registered: Registered, files: list[bytes]) -> np.ndarray:
    """The ten probabilities per file: the package's preprocessing, then the network."""
    pixels = torch.from_numpy(np.stack([load(data, "f") for data in files]))
    with torch.inference_mode():
        return torch.softmax(registered.served(pixels), dim=1).numpy()


def column(files: list[bytes]) -> list[str]:
    return [base64.b64encode(data).decode() for data in files]


def test_image_files_give_each_digit_and_its_probabilities(
    store: tuple[Registered, Path], model: mlflow.pyfunc.PyFuncModel
) -> None:
    files = list(FILES.values())
    answer = model.predict(pd.DataFrame({"image": column(files)}))
    probabilities = expected(store[0], files)
    assert list(answer.columns) == ["digit", "probability", "not_sure", "probabilities"]
    assert answer["not_sure"].dtype == bool
    np.testing.assert_allclose(np.stack(answer["probabilities"]), probabilities, atol=1e-6)
    assert answer["digit"].tolist() == probabilities.argmax(axis=1).tolist()
    np.testing.assert_allclose(answer["probability"], probabilities.max(axis=1), atol=1e-6)
    data_url = "data:image/png;base64," + column(files[:1])[0]  # a canvas's toDataURL()
    assert model.predict({"image": [data_url]})["digit"][0] == answer["digit"][0]


def test_bad_image_files_are_refused_naming_each(model: mlflow.pyfunc.PyFuncModel) -> None:
    cells = ["not base64!", *column([b"hello", FILES["four.png"], b""])]
    with pytest.raises(MlflowException) as info:
        model.predict(pd.DataFrame({"image": cells}))
    message = info.value.message
    assert info.value.get_http_status_code() == 400 and "\n" not in message
    assert "image 0: not base64" in message and "image 1: not an image" in message
    assert "image 3: the file is empty" in message and "image 2" not in message


def test_pixels_in_any_float_type_still_give_the_logits(
    store: tuple[Registered, Path], model: mlflow.pyfunc.PyFuncModel
) -> None:
    pixels = synthetic_digits(4, seed=8)[0]
    with torch.inference_mode():
        logits = store[0].served(torch.from_numpy(pixels.astype(np.float32))).numpy()
    for given in (pixels.astype(np.float32), pixels.astype(np.float64), pixels.reshape(4, 784)):
        np.testing.assert_allclose(model.predict(given), logits, rtol=1e-6, atol=1e-6)


def post(port: int, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_rest_server_cli_and_python_give_the_same_answer(
    store: tuple[Registered, Path], tmp_path: Path
) -> None:
    """`make serve`'s command, a real server process; the CLI on the same files."""
    registered, db = store
    env = clean_env(MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    port = free_port()
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", CHAMPION, "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until_healthy(server, port, seconds=120)
        table = {"columns": ["image"], "data": [[c] for c in column(list(FILES.values()))]}
        status, answer = post(port, {"dataframe_split": table})
        assert status == 200, answer
        probabilities = expected(registered, list(FILES.values()))
        rest = answer["predictions"]
        np.testing.assert_allclose([r["probabilities"] for r in rest], probabilities, atol=1e-6)
        pixels = synthetic_digits(3, seed=9)[0].astype(np.float32)
        status, answer = post(port, {"inputs": pixels.tolist()})
        with torch.inference_mode():
            logits = registered.served(torch.from_numpy(pixels)).numpy()
        assert status == 200
        np.testing.assert_allclose(answer["predictions"], logits, rtol=1e-5, atol=1e-5)
        status, answer = post(port, {"inputs": {"image": ["aGVsbG8="]}})  # "hello"
        assert status == 400 and "image 0: not an image" in answer["message"], answer
        garbage = base64.b64encode(bytes(3_000_000)).decode()  # 4 MB of base64, no image
        status, answer = post(port, {"inputs": {"image": [garbage]}})
        assert status == 400 and len(answer["message"]) <= 1000, len(answer["message"])
        assert answer["message"].endswith("Nothing was predicted."), answer["message"][-200:]
        assert "image 0: not an image" in answer["message"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    cli = subprocess.run(
        [sys.executable, "-m", "mnist_pipeline.predict", *FILES, "--json", "--model", CHAMPION],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-2000:]
    by_cli = json.loads(cli.stdout)
    assert [r["digit"] for r in by_cli] == [r["digit"] for r in rest]
    assert [r["probability"] for r in by_cli] == [round(r["probability"], 4) for r in rest]
