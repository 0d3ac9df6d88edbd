"""Your own digits: saved by content hash (`serving/collect.py`), from the CLI and the page's
server, and split deterministically into a part to train on and a part held out."""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_pipeline import predict
from mnist_pipeline.data import yours
from mnist_pipeline.demo.server import make_server
from mnist_pipeline.preprocess import your_splits
from mnist_pipeline.serving import collect
from mnist_pipeline.serving.images import ImageError, load
from test_images import encoded, page


def picture(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    left, top = int(rng.integers(20, 80)), int(rng.integers(10, 40))
    return encoded(page(box=(left, top, left + 80, top + 160)))


def test_a_picture_is_saved_by_its_hash_once_and_moves_with_a_new_label(tmp_path: Path) -> None:
    data = picture(0)
    first = collect.save(data, "a.png", 7, tmp_path)
    again = collect.save(data, "renamed.png", 7, tmp_path)
    assert (first.was, again.was) == (None, 7) and again.picture == first.picture
    assert first.picture.read_bytes() == data
    assert first.picture.parent == tmp_path / "data/yours/7" and first.picture.suffix == ".png"
    seen = first.picture.with_name(first.digest + ".28x28.png")
    assert np.array_equal(np.asarray(Image.open(seen)), load(data, "a").round().astype(np.uint8))
    assert sorted(p.name for p in (tmp_path / "data/yours/7").iterdir()) == sorted(
        [first.picture.name, seen.name]
    )  # the request's name is nowhere
    moved = collect.save(data, "a.png", 1, tmp_path)
    assert not list((tmp_path / "data/yours/7").iterdir()) and moved.picture.is_file()
    assert collect.remove(tmp_path, 1, moved.digest) and not moved.picture.exists()
    assert not collect.remove(tmp_path, 1, "../../etc/passwd")


@pytest.mark.parametrize(
    ("data", "digit", "refusal"),
    [
        (b"not an image", 3, "x.png: not an image"),
        (b"", 3, "x.png: the file is empty"),
        (picture(1), 10, "the label 10 is not a digit 0-9"),
    ],
)
def test_what_predict_refuses_is_refused_with_its_line(
    tmp_path: Path, data: bytes, digit: int, refusal: str
) -> None:
    with pytest.raises(ValueError) as info:
        collect.save(data, "x.png", digit, tmp_path)
    assert str(info.value).startswith(refusal)
    if isinstance(info.value, ImageError):
        with pytest.raises(ImageError, match=re.escape(str(info.value))):
            load(data, "x.png")
    assert not (tmp_path / "data").exists()


def test_the_cli_adds_files_and_refuses_as_predict_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    folder = tmp_path / "mine"
    folder.mkdir()
    for seed in range(3):
        (folder / f"{seed}.png").write_bytes(picture(seed))
    (folder / "bad.png").write_bytes(b"garbage")
    out = io.StringIO()
    with pytest.raises(SystemExit, match="1 of 4 files could not be added"):
        predict.main([Path("mine")], None, False, 3, label=4, out=out)
    assert out.getvalue().count(": saved as a 4: data/yours/4/") == 3
    assert "error: mine/bad.png: not an image" in capsys.readouterr().err
    assert len(yours.pictures(tmp_path / "data/yours")) == 3


def test_the_held_out_part_is_chosen_by_hash_and_stays_put_as_digits_are_added(
    tmp_path: Path,
) -> None:
    for seed in range(12):
        collect.save(picture(seed), f"{seed}.png", seed % 2, tmp_path)
    found = yours.pictures(tmp_path / "data/yours")
    held = yours.held_out(found)
    assert held == yours.held_out(list(reversed(found)))  # the order they came in: no matter
    for digit in (0, 1):  # six of each: at least one held out
        assert {d for d, digest, _ in found if digest in held} >= {digit}
    for seed in range(12, 30):
        collect.save(picture(seed), f"{seed}.png", seed % 2, tmp_path)
    later = yours.held_out(yours.pictures(tmp_path / "data/yours"))
    assert {h for h in held if int(h, 16) % yours.HELD_OUT == 0} <= later
    parts = your_splits(tmp_path / "data/yours")
    assert len(parts["yours"]) + len(parts["yours_heldout"]) == 30
    assert len(parts["yours_heldout"]) == len(later)
    assert your_splits(tmp_path / "nothing") == {}


def request(address: tuple[str, int], path: str, body: bytes = b"") -> tuple[int, dict]:
    with socket.create_connection(address, timeout=10) as client:
        host = f"Host: {address[0]}:{address[1]}"
        head = f"POST {path} HTTP/1.1\r\n{host}\r\nContent-Length: {len(body)}\r\n\r\n"
        client.sendall(head.encode() + body)
        reply = client.makefile("rb")
        status = int(reply.readline().split()[1])
        length = 0
        while (line := reply.readline().strip()) != b"":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, json.loads(reply.read(length))


def test_the_pages_server_saves_a_correction_and_takes_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    server = make_server("127.0.0.1", 0, None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = server.server_address[:2]
        status, saved = request(address, "/api/yours?digit=7", picture(0))
        assert status == 200 and saved["saved"].startswith("data/yours/7/")
        assert (tmp_path / saved["saved"]).read_bytes() == picture(0)
        assert request(address, "/api/yours?digit=x", picture(0)) == (
            400, {"error": "digit='x' is not a digit 0-9"}
        )  # fmt: skip
        status, refused = request(address, "/api/yours?digit=3", b"not an image")
        assert status == 400 and refused["error"].startswith("the image: not an image")
        undo = f"/api/yours/undo?digit=7&id={saved['id']}"
        assert request(address, undo) == (200, {"undone": True})
        assert not (tmp_path / saved["saved"]).exists()
    finally:
        server.shutdown()
        server.server_close()


def test_undo_puts_back_what_was_there(tmp_path: Path) -> None:
    """Undo removes a new picture, moves a relabelled one back, and leaves one that was already
    saved under that digit (last week's example is not lost)."""
    data = encoded(Image.open(io.BytesIO(picture(3))).convert("RGB"), "JPEG")
    first = collect.save(data, "a.jpg", 3, tmp_path)
    assert first.was is None and first.picture.suffix == ".jpg"  # the format's own extension
    again = collect.save(data, "a.jpg", 3, tmp_path)
    assert again.was == 3 and not collect.undo(tmp_path, 3, again.digest, again.was)
    assert first.picture.is_file()
    moved = collect.save(data, "a.jpg", 8, tmp_path)
    assert moved.was == 3 and collect.undo(tmp_path, 8, moved.digest, moved.was)
    assert first.picture.is_file() and not moved.picture.exists()
    assert collect.undo(tmp_path, 3, first.digest, None) and not first.picture.exists()


def test_another_sites_page_cannot_write_your_digits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page elsewhere can make the browser POST to 127.0.0.1 (no preflight for a plain body),
    and a rebound DNS name arrives with its own Host: both refused, nothing written."""
    monkeypatch.chdir(tmp_path)
    server = make_server("127.0.0.1", 0, None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    try:
        for headers in (
            {"Host": f"{host}:{port}", "Origin": "https://elsewhere.example"},
            {"Host": f"rebound.example:{port}"},
        ):
            connection = http.client.HTTPConnection(host, port, timeout=10)
            connection.request("POST", "/api/yours?digit=7", picture(0), headers)
            reply = connection.getresponse()
            assert reply.status == 403 and "error" in json.loads(reply.read())
            connection.close()
        assert not (tmp_path / "data").exists()
    finally:
        server.shutdown()
        server.server_close()
