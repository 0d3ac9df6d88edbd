"""`make demo`'s page in a real headless Chromium (Debian's), driven with real mouse events.

A tiny network is trained here on drawn 0s and 1s (rendered the way the page's pad draws, then
made MNIST-like by `serving/images.py`), served by the demo. The test draws a 1 and a 0 on the
pad, reads the digit and the bars from the page, and checks them against `predict` on the same
canvas PNG; it then sends image files through the page's file input and checks those against
`predict` on the same files.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import math
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from browser import needs_chromium
from cdp import Page
from mnist_pipeline.model import model_file
from mnist_pipeline.model.doubt import Detector, Doubt
from mnist_pipeline.model.networks import ConvNet
from mnist_pipeline.serving.images import load
from workspace import clean_env

pytestmark = [needs_chromium, pytest.mark.slow]

SPEC = {"_target_": "mnist_pipeline.model.networks.ConvNet", "channels": [4, 8], "hidden": [32]}
# Strokes on the 280x280 pad, in pad pixels: a slanted 1 and an oval 0.
ONE = [[(150 + 12 * (1 - t), 45 + 190 * t) for t in np.linspace(0, 1, 15)]]
ZERO = [[(140 + 55 * math.sin(a), 140 - 90 * math.cos(a)) for a in np.linspace(0, 6.5, 30)]]


def drawn(digit: int, rng: np.random.Generator) -> bytes:
    """A 0 or a 1 as the pad draws one (white on black, an 18 px brush), at a random place,
    size and slant; as PNG bytes."""
    image = Image.new("L", (280, 280), 0)
    pen = ImageDraw.Draw(image)
    cx, cy = rng.uniform(100, 180, size=2)
    width = int(rng.integers(12, 24))
    if digit == 1:
        slant, half = rng.uniform(-25, 25), rng.uniform(60, 110)
        pen.line([(cx + slant, cy - half), (cx - slant, cy + half)], fill=255, width=width)
    else:
        rx, ry = rng.uniform(35, 70), rng.uniform(60, 100)
        pen.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline=255, width=width)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ConvNet that tells drawn 0s from 1s, saved as train saves models (1-2 s)."""
    rng = np.random.default_rng(0)
    labels = np.arange(160) % 2
    pixels = np.stack([load(drawn(int(d), rng), f"digit {i}") for i, d in enumerate(labels)])
    scaled = pixels / 255.0
    norm = {"mean": float(scaled.mean()), "std": float(scaled.std())}
    torch.manual_seed(0)
    network = ConvNet(channels=(4, 8), hidden=(32,))
    x = (torch.from_numpy(scaled).float().unsqueeze(1) - norm["mean"]) / norm["std"]
    y = torch.from_numpy(labels)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads only contend, on a busy CI machine most
    try:
        for _ in range(30):  # 100% on fresh drawings after 25
            batch = torch.randperm(len(x))[:32]
            loss = torch.nn.functional.cross_entropy(network(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    model_file.save(path, network.eval(), SPEC, norm)
    return path


def start_demo(folder: Path, *args: str) -> Iterator[str]:
    """`python -m mnist_pipeline.demo` on a free port of 127.0.0.1, from `folder`; its URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "mnist_pipeline.demo", "--port", "0", *args],
        cwd=folder, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = server.stdout.readline().strip()  # printed once it listens
        assert url.startswith("http://127.0.0.1:"), server.stderr.read()
        yield url + "/"
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def demo_page(folder: Path, model: Path) -> Iterator[Page]:
    """The demo serving `model`, started in `folder`, open in Chromium and ready."""
    server = start_demo(folder, "--model", str(model))
    url = next(server)
    try:
        with Page(folder) as page:
            page.goto(url)
            page.wait_for("document.body.dataset.ready === 'true'")
            yield page
    finally:
        server.close()


@pytest.fixture(scope="module")
def demo(tiny_model: Path) -> Iterator[str]:
    yield from start_demo(tiny_model.parent, "--model", str(tiny_model))


def predict(model: Path, *files: Path) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-m", "mnist_pipeline.predict", "--json", "--model", str(model), *files],
        env=clean_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def draw(page: Page, strokes: list[list[tuple[float, float]]]) -> dict:
    """Draw `strokes` (pad pixels) with the mouse; what the page shows once it has answered."""
    x0, y0 = page.js("(b => [b.x, b.y])(document.getElementById('pad').getBoundingClientRect())")
    done = int(page.js("document.body.dataset.predictions"))
    for stroke in strokes:
        page.drag([(x0 + x, y0 + y) for x, y in stroke])
    page.wait_for(
        f"document.body.dataset.predictions > {done} && document.body.dataset.busy == 'false'"
    )
    return shown(page)


def shown(page: Page) -> dict:
    return page.js(
        """({
        digit: document.getElementById('digit').textContent,
        bars: [...document.querySelectorAll('#bars li')].map(li => Number(li.dataset.p)),
        best: [...document.querySelectorAll('#bars li.best')].map(li => Number(li.dataset.digit)),
        message: (m => m.hidden ? '' : m.textContent)(document.getElementById('message')),
        filters: document.querySelectorAll('#filters canvas').length,
        layers: [...document.querySelectorAll('#layers h2 small')]
            .map(s => s.textContent.replaceAll('\u00d7', 'x')),
        received: document.querySelectorAll('#received canvas').length,
        png: document.getElementById('pad').toDataURL('image/png'),
    })"""
    )


def test_drawings_and_files_on_the_page_get_predicts_digits(
    demo: str, tiny_model: Path, tmp_path: Path
) -> None:
    """A 1 and a 0 drawn with the mouse, then two files as a user has them (a dark-on-white JPEG
    scan of a 1, a white-on-black PNG of a 0) chosen in the page's file input: the page shows the
    digits and probabilities `predict` gives for the same canvas PNGs and the same files."""
    rng = np.random.default_rng(7)
    one = Image.open(io.BytesIO(drawn(1, rng)))
    Image.eval(one, lambda v: 255 - v).convert("RGB").save(tmp_path / "one.jpg", quality=85)
    (tmp_path / "zero.png").write_bytes(drawn(0, rng))
    files = [tmp_path / "one-canvas.png", tmp_path / "zero-canvas.png"]
    files += [tmp_path / "one.jpg", tmp_path / "zero.png"]
    with Page(tmp_path) as page:
        page.goto(demo)
        page.wait_for("document.body.dataset.ready === 'true'")
        answers = []
        for path, strokes in zip(files, (ONE, ZERO), strict=False):
            page.click("#clear")
            assert shown(page)["digit"] == "?"
            answers.append(draw(page, strokes))
            path.write_bytes(base64.b64decode(answers[-1]["png"].split(",", 1)[1]))
        page.screenshot(tmp_path / "drawn.png")
        for path in files[2:]:
            done = int(page.js("document.body.dataset.predictions"))
            page.choose_file("#file", path)
            page.wait_for(f"document.body.dataset.predictions > {done}")
            answers.append(shown(page))
        loaded = page.js("performance.getEntriesByType('resource').map(e => e.name)")
    for path in files[:2]:  # ink where the mouse went only: the pad never moved under it
        assert np.asarray(Image.open(path).convert("L"))[:30].max() == 0, path.name
    expected = predict(tiny_model, *files)
    assert [a["digit"] for a in answers] == ["1", "0", "1", "0"]
    assert [e["digit"] for e in expected] == [1, 0, 1, 0]
    for answer, want in zip(answers, expected, strict=True):
        assert answer["message"] == ""
        assert len(answer["bars"]) == 10 and sum(answer["bars"]) == pytest.approx(1, abs=1e-4)
        assert answer["best"] == [want["digit"]]
        assert answer["bars"][want["digit"]] == pytest.approx(want["probability"], abs=1e-3)
        assert answer["received"] == 1 and answer["filters"] == 4
        assert answer["layers"] == [
            "convolved 1: 4x28x28", "pooled 1: 4x14x14", "convolved 2: 8x10x10", "pooled 2: 8x5x5"
        ]  # fmt: skip
    # offline: everything the page loaded came from the demo itself
    assert loaded and all(name.startswith(demo) for name in loaded), loaded
    assert (tmp_path / "drawn.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_model_the_page_says_how_to_get_one(tmp_path: Path) -> None:
    """No registry, no models/model.pt: a message on the page, not a blank page."""
    server = start_demo(tmp_path)
    url = next(server)
    try:
        with Page(tmp_path) as page:
            page.goto(url)
            page.wait_for("document.body.dataset.ready === 'false'")
            message = shown(page)["message"]
            answer = urllib.request.urlopen(url + "api/model", timeout=10)
            page.screenshot(tmp_path / "no-model.png")
    finally:
        server.close()
    assert "No model yet" in message and "make repro" in message
    assert json.load(answer)["ready"] is False


def test_a_doubtful_answer_is_shown_plainly_with_the_two_likeliest(
    tiny_model: Path, tmp_path: Path
) -> None:
    """The same network, with a rule that doubts every answer: the page says "not sure" and
    names the two likeliest digits, as `predict --json` flags it."""
    model, norm, _ = model_file.read(tiny_model)
    doubtful = tmp_path / "doubtful.pt"
    model_file.save(doubtful, model, SPEC, norm, Doubt(max_score=-1e9, detector=Detector()))
    with demo_page(tmp_path, doubtful) as page:
        answer = draw(page, ONE)
    canvas = tmp_path / "canvas.png"
    canvas.write_bytes(base64.b64decode(answer["png"].split(",", 1)[1]))
    (expected,) = predict(doubtful, canvas)
    assert expected["not_sure"] is True and expected["digit"] == 1
    first, second = (t["digit"] for t in expected["top"][:2])
    assert answer["digit"] == "not sure"
    assert f"maybe {first} (" in answer["message"] and f") or {second} (" in answer["message"]
    assert answer["best"] == [1]  # the bars still show every probability


def test_wrong_its_a_saves_the_drawing_in_your_digits_and_undo_takes_it_back(
    tiny_model: Path, tmp_path: Path
) -> None:
    """Draw, correct with one click: the drawing as sent lands in data/yours/<digit>/ under its
    content hash, beside the 28x28 the network received; undo removes both."""
    with demo_page(tmp_path, tiny_model) as page:
        answer = draw(page, ONE)
        assert page.js("document.getElementById('wrong').hidden") is False
        page.click('#labels button[data-digit="7"]')
        page.wait_for("(document.body.dataset.saved || '').startsWith('data/yours/7/')")
        saved = tmp_path / page.js("document.body.dataset.saved")
        drawing = base64.b64decode(answer["png"].split(",", 1)[1])
        assert saved.read_bytes() == drawing
        assert saved.name == hashlib.sha256(drawing).hexdigest()[:16] + ".png"
        assert saved.with_name(saved.stem + ".28x28.png").is_file()
        page.click("#undo")
        page.wait_for("document.body.dataset.saved === ''")
        assert not list((tmp_path / "data/yours/7").iterdir())
