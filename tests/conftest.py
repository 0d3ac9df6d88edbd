"""Shared fixtures: the synthetic mirror on disk and served by a real HTTP server."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from synthetic import mirror_files


@pytest.fixture(scope="session")
def synthetic_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like an MNIST mirror, holding synthetic data."""
    root = tmp_path_factory.mktemp("mirror")
    for name, data in mirror_files().items():
        (root / name).write_bytes(data)
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def http_mirror(synthetic_mirror: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving the synthetic mirror; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(synthetic_mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
