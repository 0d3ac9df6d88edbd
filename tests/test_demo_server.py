"""The demo's server over real HTTP on 127.0.0.1 (in this process): answers, refusals, the page's
files, no model yet; and `make demo`'s address."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mnist_pipeline.demo.server import make_server
from mnist_pipeline.model import model_file
from mnist_pipeline.model.networks import MLP, ConvNet
from mnist_pipeline.serving.images import load
from workspace import REPO, clean_env

NORM = {"mean": 0.13, "std": 0.31}
LENET5 = {"_target_": "mnist_pipeline.model.networks.ConvNet"}  # ConvNet's defaults: LeNet-5
MLP_SPEC = {"_target_": "mnist_pipeline.model.networks.MLP", "hidden": [16]}


def png_of_a_one() -> bytes:
    image = Image.new("L", (120, 120), 0)
    image.paste(255, (55, 15, 65, 105))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def serve(given: Path | None) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, given)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    model_file.save(path, ConvNet(), LENET5, NORM)
    return path


@pytest.fixture(scope="module")
def address(weights: Path) -> Iterator[str]:
    yield from serve(weights)


def request(
    address: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection(address, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    reply = connection.getresponse()
    data = reply.read()
    connection.close()
    return reply.status, dict(reply.getheaders()), data


def test_an_answer_is_the_models_digit_and_what_it_saw(address: str, weights: Path) -> None:
    data = png_of_a_one()
    status, _, body = request(address, "POST", "/api/predict?name=one.png", data)
    assert status == 200
    result = json.loads(body)
    with torch.inference_mode():
        logits = model_file.load_served(weights)(torch.from_numpy(load(data, "one.png")))[0]
    assert result["digit"] == int(logits.argmax())
    assert result["probabilities"] == pytest.approx(torch.softmax(logits, 0).tolist(), abs=1e-5)
    assert result["input"]["shape"] == [1, 28, 28] and result["filters"]["shape"] == [6, 5, 5]
    names = [(layer["name"], layer["maps"]["shape"]) for layer in result["layers"]]
    assert names == [
        ("convolved 1", [6, 28, 28]), ("pooled 1", [6, 14, 14]),
        ("convolved 2", [16, 10, 10]), ("pooled 2", [16, 5, 5]),
    ]  # fmt: skip
    maps = np.frombuffer(base64.b64decode(result["layers"][0]["maps"]["data"]), "u1")
    assert maps.size == 6 * 28 * 28 and maps.max() == 255  # each map stretched over 0-255


def test_a_file_that_is_no_image_gets_one_line_naming_it(address: str) -> None:
    status, _, body = request(address, "POST", "/api/predict?name=notes.txt", b"not an image")
    assert status == 400
    error = json.loads(body)["error"]
    assert error.startswith("notes.txt: not an image") and "\n" not in error


def test_a_huge_upload_is_refused_unread(address: str) -> None:
    headers = {"Content-Length": str(50 * 1024 * 1024)}
    status, _, body = request(address, "POST", "/api/predict", b"", headers)
    assert status == 413 and "too large" in json.loads(body)["error"]


@pytest.mark.parametrize(
    ("length", "status", "says"),
    [
        ("-1", 400, "is not a number of bytes"),  # rfile.read(-1): until the client closes
        ("abc", 400, "is not a number of bytes"),  # int("abc"): a ValueError mid-request
        (None, 400, "with a Content-Length"),
        (str(21 * 1024 * 1024), 413, "too large for an image of a digit"),
    ],
)
def test_a_bad_content_length_is_answered_at_once(
    address: str, length: str | None, status: int, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The client keeps its connection open, having sent part of a body: the answer comes at
    once, and the server logs no traceback."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as client:
        header = "" if length is None else f"Content-Length: {length}\r\n"
        client.sendall(
            f"POST /api/predict HTTP/1.1\r\nHost: {host}:{port}\r\n{header}\r\n".encode()
        )
        client.sendall(b"\x89PNG part of a body")
        reply = client.makefile("rb").read()  # the server closes after answering
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status}".encode()), head
    assert says in json.loads(body)["error"]
    assert "Traceback" not in caplog.text


def test_the_page_and_its_files_come_from_the_demo_alone(address: str) -> None:
    """No CDN, fonts or scripts from elsewhere: the files name no other site, and the browser is
    told to load nothing from anywhere else (Content-Security-Policy)."""
    for path, kind in [("/", "text/html"), ("/demo.js", "javascript"), ("/demo.css", "css")]:
        status, headers, body = request(address, "GET", path)
        assert status == 200 and kind in headers["Content-Type"]
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert b"http:" not in body and b"https:" not in body and b"//cdn" not in body
    assert request(address, "GET", "/../../etc/passwd")[0] == 404


def test_an_mlp_shows_what_it_has(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model_file.save(tmp_path / "mlp.pt", MLP(hidden=(16,)), MLP_SPEC, NORM)
    for address in serve(tmp_path / "mlp.pt"):
        status, _, body = request(address, "POST", "/api/predict", png_of_a_one())
        result = json.loads(body)
        assert status == 200 and result["filters"] is None and result["layers"] == []
        assert len(result["probabilities"]) == 10


def test_no_model_yet_is_a_message_then_the_model_once_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights: Path
) -> None:
    """No registry and no models/model.pt: the page gets a message saying what to run, a drawing
    gets 503; once `make repro` has written models/model.pt, the same demo serves it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for address in serve(None):
        status, _, body = request(address, "GET", "/api/model")
        assert status == 200 and json.loads(body)["ready"] is False
        assert "make repro" in json.loads(body)["message"]
        assert request(address, "POST", "/api/predict", png_of_a_one())[0] == 503
        assert not (tmp_path / "mlflow.db").exists()  # looking for a store made none
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / "model.pt").write_bytes(weights.read_bytes())
        status, _, body = request(address, "GET", "/api/model")
        assert json.loads(body)["ready"] is True and "models/model.pt" in json.loads(body)["about"]


def test_make_demo_serves_on_127_0_0_1_port_8000_unless_told() -> None:
    def command(*args: str) -> str:
        make = ["make", "--no-print-directory", "-n", "demo", *args]  # no "Entering directory"
        out = subprocess.run(make, cwd=REPO, env=clean_env(), capture_output=True, text=True,
                             check=True)  # fmt: skip
        return out.stdout.strip().splitlines()[-1]

    assert command().endswith("-m mnist_pipeline.demo --host '127.0.0.1' --port '8000'")
    assert command("PORT=8001", "HOST=0.0.0.0").endswith("--host '0.0.0.0' --port '8001'")


@pytest.mark.slow
def test_a_port_in_use_is_one_clear_paragraph(weights: Path, address: str) -> None:
    port = address.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "mnist_pipeline.demo", "--port", port, "--model", str(weights)],
        env=clean_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot serve on 127.0.0.1:{port}")
    assert "make demo PORT=" in result.stderr and "Traceback" not in result.stderr
