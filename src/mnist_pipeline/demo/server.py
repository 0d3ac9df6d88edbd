"""The demo's HTTP server: the page (three static files from the package) and two JSON endpoints.

    GET  /api/model             {"ready": true, "about": ...} or {"ready": false, "message": ...}
    POST /api/predict?name=...  body: an image file (the canvas as PNG, or a dropped file)
                                → `model.answer`, or {"error": ...} with 400, 413 or 503
    POST /api/yours?digit=D     body: the same file, labelled D: saved into data/yours/D/
                                (`serving/collect.py`) → {"saved", "digit", "id", "was"}
    POST /api/yours/undo?digit=D&id=...&was=W   as it was before → {"undone": true|false}

A POST must come from the demo's own page (`cross_site`): another site's page cannot write to
your digits through the user's browser.

The standard library's threaded server: one user on 127.0.0.1 needs no framework. Without a model
the page says how to train one, and every later request looks again, so a page reloaded after
`make repro` works without restarting the demo.
"""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import re
import threading
import time
import urllib.parse
from importlib import resources
from pathlib import Path

from mnist_pipeline.demo.model import about, answer, open_model
from mnist_pipeline.model.model_file import CheckpointError
from mnist_pipeline.serving.collect import save, undo
from mnist_pipeline.serving.images import MAX_BYTES, TOO_LARGE, ImageError
from mnist_pipeline.serving.loader import Loaded, project

log = logging.getLogger(__name__)
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "/demo.css": ("demo.css", "text/css; charset=utf-8"),
}
# Nothing from anywhere but this server: the page works offline, and cannot leak what is drawn.
POLICY = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'"


class Demo:
    """The served model, opened on first need and again while there is none."""

    def __init__(self, given: Path | None) -> None:
        self.given, self.root = given, project()
        self.served: Loaded | None = None
        self.lock = threading.Lock()  # one forward pass at a time; model opened once

    def model(self) -> Loaded:
        with self.lock:
            if self.served is None:
                self.served = open_model(self.given)
                log.info("serving %s", about(self.served))
            return self.served

    def predict(self, data: bytes, name: str) -> dict:
        served = self.model()
        with self.lock:
            return answer(served, data, name)


class Handler(http.server.BaseHTTPRequestHandler):
    demo: Demo  # set by `make_server`
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/api/model":
            try:
                self.send_json(200, {"ready": True, "about": about(self.demo.model())})
            except CheckpointError as e:
                self.send_json(200, {"ready": False, "message": str(e)})
        elif path in STATIC:
            name, kind = STATIC[path]
            body = resources.files("mnist_pipeline.demo").joinpath("static", name).read_bytes()
            self.send(200, body, kind)
        else:
            self.send_json(404, {"error": f"no page {path}"})

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        problem = cross_site(self.headers, *self.server.server_address[:2])
        if problem:
            self.close_connection = True
            self.send_json(403, {"error": problem})
            return
        if url.path == "/api/yours/undo":
            was = to_digit(query.get("was")) if query.get("was") else None
            digit, digest = to_digit(query.get("digit")), query.get("id", "")
            self.send_json(200, {"undone": undo(self.demo.root, digit, digest, was)})
            return
        if url.path not in ("/api/predict", "/api/yours"):
            self.send_json(404, {"error": f"no endpoint {url.path}"})
            return
        length, problem = body_length(self.headers)
        if problem:
            self.close_connection = True  # the body, if any, is left unread
            self.send_json(413 if length > MAX_BYTES else 400, {"error": problem})
            return
        data = self.rfile.read(length)
        name = query.get("name", "the image")[:200]
        if url.path == "/api/yours":
            self.label(data, query.get("digit"))
            return
        started = time.perf_counter()
        try:
            result = self.demo.predict(data, name)
        except ImageError as e:
            self.send_json(400, {"error": str(e)})
            return
        except CheckpointError as e:
            self.send_json(503, {"error": str(e)})
            return
        result["ms"] = round((time.perf_counter() - started) * 1000, 1)
        self.send_json(200, result)

    def label(self, data: bytes, digit: str | None) -> None:
        """Save the file as one of your digits; a bad digit or image is a 400 naming it."""
        if to_digit(digit) < 0:
            self.send_json(400, {"error": f"digit={digit!r} is not a digit 0-9"})
            return
        try:
            saved = save(data, "the image", to_digit(digit), self.demo.root)
        except ValueError as e:  # ImageError included: the line predict gives
            self.send_json(400, {"error": str(e)})
            return
        where = saved.picture.relative_to(self.demo.root).as_posix()
        self.send_json(
            200, {"saved": where, "digit": saved.digit, "id": saved.digest, "was": saved.was}
        )

    def send_json(self, status: int, value: dict) -> None:
        self.send(status, json.dumps(value).encode(), "application/json")

    def send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", POLICY)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def body_length(headers: http.client.HTTPMessage) -> tuple[int, str | None]:
    """The body's length from Content-Length, and why the request is refused unread, if it is:
    no length or one that is not a number (`rfile.read(-1)` would read until the client stops),
    or more than `MAX_BYTES`. Chunked bodies are not read: a browser's upload has a length."""
    text = headers.get("Content-Length")
    if headers.get("Transfer-Encoding") or text is None:
        return 0, "send the image file with a Content-Length (no chunked transfer)"
    if not re.fullmatch(r"[0-9]{1,12}", text.strip()):
        return 0, f"Content-Length: {text[:40]!r} is not a number of bytes"
    length = int(text)
    return length, f"{length:,} bytes: {TOO_LARGE}" if length > MAX_BYTES else None


def cross_site(headers: http.client.HTTPMessage, address: str, port: int) -> str | None:
    """Why a POST cannot come from the demo's own page, if it cannot. Another site's page in the
    user's browser can send one to 127.0.0.1 (a form or `fetch` needs no permission for a plain
    body), and a DNS name rebound to 127.0.0.1 arrives with its own Host: on 127.0.0.1 the Host
    must be a loopback name, and everywhere an Origin, when sent, must be the Host's own."""
    host, origin = headers.get("Host", ""), headers.get("Origin")
    loopback = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if address in ("127.0.0.1", "::1") and host not in loopback:
        return f"Host: {host[:60]!r} is not this demo's address"
    if origin is not None and urllib.parse.urlsplit(origin).netloc != host:
        return f"Origin: {origin[:60]!r} is another site: only the demo's own page may send this"
    return None


def to_digit(text: str | None) -> int:
    """A query's digit, 0-9; -1 for anything else (which `save` refuses, naming it)."""
    return int(text) if text is not None and text in "0123456789" and len(text) == 1 else -1


def make_server(host: str, port: int, given: Path | None) -> http.server.ThreadingHTTPServer:
    """Bound, not yet serving (`serve_forever`); port 0 picks a free one."""
    handler = type("DemoHandler", (Handler,), {"demo": Demo(given)})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
