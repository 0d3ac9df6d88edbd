"""Mirror fallback against real HTTP servers on 127.0.0.1: every failure mode moves on, leaves
nothing behind, and never touches a good file already in place."""

import gzip
import hashlib
import http.server
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnist_pipeline.data import mirrors
from mnist_pipeline.data.mirrors import (
    DownloadError,
    RemoteFile,
    download_all,
    mirror_list,
    mirror_url,
)
from synthetic import NAMES, mirror_files

FILES = mirror_files()
RAW = {name: gzip.decompress(FILES[f"{name}.gz"]) for name in NAMES.values()}
REMOTE = [RemoteFile(name, hashlib.sha256(RAW[name]).hexdigest()) for name in NAMES.values()]
FIRST = REMOTE[1]  # the labels file: small
TIMEOUT = 0.5
STALL_S = 2.0


def send(handler, body, status=200):
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def good(handler, name):
    if name in FILES:
        send(handler, FILES[name])
    else:
        send(handler, b"no such file", 404)


def first_only(handler, name):
    """Serve FIRST; 404 for everything else."""
    if name == f"{FIRST.name}.gz":
        good(handler, name)
    else:
        send(handler, b"", 404)


# Misbehaviours, each given the handler and the requested `.gz` name.
MODES = {
    "404": lambda h, name: send(h, b"gone", 404),
    "500": lambda h, name: send(h, b"oops", 500),
    "wrong-bytes": lambda h, name: send(h, gzip.compress(b"definitely not MNIST")),
    "truncated": lambda h, name: send(h, FILES[name][: len(FILES[name]) // 2]),
    "not-gzip": lambda h, name: send(h, gzip.decompress(FILES[name])),
}
REASONS = {
    "404": "HTTP 404",
    "500": "HTTP 500",
    "wrong-bytes": "checksum mismatch",
    "truncated": "truncated gzip",
    "not-gzip": "not a valid gzip file",
    "stall": f"timed out after {TIMEOUT:g} s",
    "refused": "unreachable",
}


class Server:
    """A ThreadingHTTPServer on an ephemeral port whose GETs call `respond(handler, name)`."""

    def __init__(self, respond):
        self.requests: list[str] = []
        self.stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                respond(self, self.path.lstrip("/"))

            def log_message(self, format, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(respond):
        servers.append(Server(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def good_mirror(serve):
    """Like conftest's http_mirror, but with a server that shuts down in milliseconds."""
    return serve(good).url


@pytest.fixture
def refused_url():
    """A port nothing listens on: bound to get a free number, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def bad_mirror(serve, refused_url):
    """A mirror URL that fails in the named way."""

    def make(mode):
        if mode == "refused":
            return refused_url
        if mode == "stall":
            server = serve(lambda h, name: server.stop.wait(STALL_S))
            return server.url
        return serve(MODES[mode]).url

    return make


def leftovers(directory: Path):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- mirror_url / mirror_list -----------------------------------------------------------------


def test_mirror_url_plain_path_becomes_file_uri(tmp_path):
    url = mirror_url(str(tmp_path))
    assert url == tmp_path.resolve().as_uri() + "/"
    assert url.startswith("file:///")


def test_mirror_url_relative_path_is_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert mirror_url("sub") == (tmp_path / "sub").resolve().as_uri() + "/"


def test_mirror_url_http_gets_trailing_slash():
    assert mirror_url("http://example.org/mnist") == "http://example.org/mnist/"
    assert mirror_url("https://example.org/mnist/") == "https://example.org/mnist/"
    assert mirror_url("file:///data/mnist") == "file:///data/mnist/"


def test_mirror_list_puts_env_mirror_first(tmp_path):
    configured = ["https://a.example/mnist", "http://b.example/"]
    env = {"MNIST_MIRROR": "http://local:8000/m"}
    assert mirror_list(configured, env) == [
        "http://local:8000/m/",
        "https://a.example/mnist/",
        "http://b.example/",
    ]
    assert mirror_list(configured, {}) == ["https://a.example/mnist/", "http://b.example/"]
    assert mirror_list(configured, {"MNIST_MIRROR": ""}) == mirror_list(configured, {})


def test_mirror_list_reads_os_environ(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_MIRROR", str(tmp_path))
    assert mirror_list(["http://x/"]) == [tmp_path.resolve().as_uri() + "/", "http://x/"]


# --- successful downloads ---------------------------------------------------------------------


def test_download_from_http_mirror(http_mirror, tmp_path):
    dest = tmp_path / "raw"
    paths = download_all(REMOTE, [http_mirror], dest, timeout=5)
    assert paths == [dest / f.name for f in REMOTE]
    for file in REMOTE:
        assert (dest / file.name).read_bytes() == RAW[file.name]
    assert leftovers(dest) == sorted(f.name for f in REMOTE)


def test_download_from_file_mirror(synthetic_mirror, tmp_path):
    for mirror in [*mirror_list([str(synthetic_mirror)], {}), synthetic_mirror.as_uri()]:
        dest = tmp_path / mirror[-8:].strip("/")
        download_all(REMOTE, [mirror_url(mirror)], dest)
        assert all((dest / f.name).read_bytes() == RAW[f.name] for f in REMOTE)


def test_missing_file_in_file_mirror_moves_on(tmp_path, good_mirror):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    dest = tmp_path / "raw"
    download_all([FIRST], [mirror_url(str(empty)), good_mirror], dest)
    assert (dest / FIRST.name).read_bytes() == RAW[FIRST.name]


# --- fallback ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(REASONS))
def test_failing_mirror_falls_through_to_next(mode, bad_mirror, good_mirror, tmp_path, caplog):
    bad = bad_mirror(mode)
    dest = tmp_path / "raw"
    with caplog.at_level(logging.WARNING, logger="mnist_pipeline.data.mirrors"):
        paths = download_all([FIRST], [bad, good_mirror], dest, timeout=TIMEOUT, attempts=1)
    assert paths == [dest / FIRST.name]
    assert (dest / FIRST.name).read_bytes() == RAW[FIRST.name]
    assert leftovers(dest) == [FIRST.name]
    failed = [r.getMessage() for r in caplog.records if "mirror failed" in r.getMessage()]
    assert len(failed) == 1
    assert failed[0].startswith(f"mirror failed: {bad}{FIRST.name}.gz: {REASONS[mode]}")


def test_http_500_is_retried_then_next_mirror(serve, good_mirror, tmp_path):
    broken = serve(MODES["500"])
    download_all([FIRST], [broken.url, good_mirror], tmp_path, timeout=TIMEOUT, attempts=2)
    assert broken.requests == [f"/{FIRST.name}.gz"] * 2
    assert (tmp_path / FIRST.name).read_bytes() == RAW[FIRST.name]


def test_http_404_is_not_retried(serve, good_mirror, tmp_path):
    missing = serve(MODES["404"])
    download_all([FIRST], [missing.url, good_mirror], tmp_path, timeout=TIMEOUT, attempts=3)
    assert missing.requests == [f"/{FIRST.name}.gz"]


def test_checksum_mismatch_is_not_retried(serve, good_mirror, tmp_path):
    wrong = serve(MODES["wrong-bytes"])
    download_all([FIRST], [wrong.url, good_mirror], tmp_path, timeout=TIMEOUT, attempts=3)
    assert len(wrong.requests) == 1


def test_first_good_mirror_wins(serve, good_mirror, tmp_path):
    first, second = serve(good), serve(good)
    download_all(REMOTE, [first.url, second.url], tmp_path, timeout=5)
    assert len(first.requests) == len(REMOTE)
    assert second.requests == []


def test_stalled_mirror_times_out_quickly(bad_mirror, good_mirror, tmp_path):
    start = time.monotonic()
    download_all([FIRST], [bad_mirror("stall"), good_mirror], tmp_path, timeout=TIMEOUT, attempts=1)
    assert time.monotonic() - start < STALL_S
    assert (tmp_path / FIRST.name).read_bytes() == RAW[FIRST.name]


def test_unreachable_mirror_is_not_asked_again(refused_url, serve, tmp_path, monkeypatch):
    asked = []
    real_fetch = mirrors.fetch

    def spy(url, *args, **kwargs):
        asked.append(url)
        return real_fetch(url, *args, **kwargs)

    monkeypatch.setattr(mirrors, "fetch", spy)
    # serves only the first file, so the second fails everywhere and the error shows the skip
    partial = serve(first_only)
    second = REMOTE[3]
    with pytest.raises(DownloadError) as info:
        download_all([FIRST, second], [refused_url, partial.url], tmp_path, timeout=5)
    assert [u for u in asked if u.startswith(refused_url)] == [f"{refused_url}{FIRST.name}.gz"]
    assert f"{refused_url}: unreachable" in str(info.value)
    assert f"{refused_url}{second.name}.gz" not in str(info.value)
    assert partial.requests == [f"/{FIRST.name}.gz", f"/{second.name}.gz"]


@pytest.mark.parametrize("mode", ["500", "truncated", "wrong-bytes"])
def test_reachable_failing_mirror_is_asked_again(mode, serve, good_mirror, tmp_path):
    flaky = serve(MODES[mode])
    second = REMOTE[3]
    download_all([FIRST, second], [flaky.url, good_mirror], tmp_path, timeout=5, attempts=1)
    assert flaky.requests == [f"/{FIRST.name}.gz", f"/{second.name}.gz"]


# --- all mirrors failing ----------------------------------------------------------------------


def test_all_mirrors_failing_lists_each_with_reason(bad_mirror, tmp_path):
    modes = ["refused", "404", "wrong-bytes", "stall"]
    urls = [bad_mirror(m) for m in modes]
    with pytest.raises(DownloadError) as info:
        download_all([FIRST], urls, tmp_path / "raw", timeout=TIMEOUT, attempts=1)
    message = str(info.value)
    assert FIRST.name in message.splitlines()[0]
    for mode, url in zip(modes, urls, strict=True):
        assert f"  - {url}{FIRST.name}.gz: {REASONS[mode]}" in message
    assert "MNIST_MIRROR" in message


@pytest.mark.parametrize("mode", list(REASONS))
def test_failure_leaves_nothing_behind(mode, bad_mirror, tmp_path):
    dest = tmp_path / "raw"
    with pytest.raises(DownloadError, match=REASONS[mode]):
        download_all([FIRST], [bad_mirror(mode)], dest, timeout=TIMEOUT, attempts=1)
    assert leftovers(dest) == []


@pytest.mark.parametrize("mode", ["wrong-bytes", "truncated", "not-gzip", "500"])
def test_failure_keeps_previous_good_file(mode, bad_mirror, tmp_path):
    previous = b"the file verified by an earlier run"
    (tmp_path / FIRST.name).write_bytes(previous)
    with pytest.raises(DownloadError):
        download_all([FIRST], [bad_mirror(mode)], tmp_path, timeout=TIMEOUT, attempts=1)
    assert (tmp_path / FIRST.name).read_bytes() == previous
    assert leftovers(tmp_path) == [FIRST.name]


def test_later_file_failure_keeps_earlier_files(serve, tmp_path):
    partial = serve(first_only)
    with pytest.raises(DownloadError, match=REMOTE[3].name):
        download_all([FIRST, REMOTE[3]], [partial.url], tmp_path, timeout=5)
    assert leftovers(tmp_path) == [FIRST.name]
    assert (tmp_path / FIRST.name).read_bytes() == RAW[FIRST.name]


# --- known defects ----------------------------------------------------------------------------


def cut_chunked(handler, name):
    """A chunked response that stops mid-chunk: http.client raises IncompleteRead."""
    body = FILES[name]
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.wfile.write(f"{len(body):x}\r\n".encode() + body[: len(body) // 2])
    handler.close_connection = True


def test_cut_off_chunked_transfer_falls_through(serve, good_mirror, tmp_path):
    cut = serve(cut_chunked)
    download_all([FIRST], [cut.url, good_mirror], tmp_path, timeout=TIMEOUT, attempts=1)
    assert (tmp_path / FIRST.name).read_bytes() == RAW[FIRST.name]


def test_zero_attempts_is_not_success(good_mirror, tmp_path):
    with pytest.raises((ValueError, DownloadError)):
        download_all([FIRST], [good_mirror], tmp_path, timeout=5, attempts=0)


def test_verified_files_are_kept_and_not_fetched_again(serve, good_mirror, tmp_path):
    download_all([FIRST], [good_mirror], tmp_path, timeout=5)
    before = (tmp_path / FIRST.name).stat().st_mtime_ns
    dead = serve(MODES["404"])
    download_all([FIRST], [dead.url], tmp_path, timeout=5)  # nothing to fetch: no mirror asked
    assert dead.requests == []
    assert (tmp_path / FIRST.name).stat().st_mtime_ns == before


def test_a_damaged_file_is_fetched_again(good_mirror, tmp_path):
    (tmp_path / FIRST.name).write_bytes(b"damaged")
    download_all([FIRST], [good_mirror], tmp_path, timeout=5)
    assert (tmp_path / FIRST.name).read_bytes() == RAW[FIRST.name]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB filesystem (tmpfs), for a disk that fills up mid-download."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


# Each a real failure of the local disk, set up in the downloading process before it starts.
DISK_FAILURES = {
    # the file-size limit (RLIMIT_FSIZE) hit halfway through: EFBIG, not a kill
    "File too large": "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))",
    # a folder this user may not write to (root may write anywhere: run as nobody)
    # (what Python loads lazily is loaded first: nobody cannot read root's Python install)
    "Permission denied": "import encodings.idna\nos.setuid(65534) if os.geteuid() == 0 else None",
    "No space left on device": "",  # the `small_disk` filesystem fills up
}


@pytest.mark.parametrize("reason", DISK_FAILURES)
def test_a_write_failing_midway_leaves_nothing_and_says_so(
    reason: str, http_mirror: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dest = tmp_path / "raw"
    dest.mkdir()
    if (
        reason == "Permission denied"
    ):  # readable by all (pytest's own folders are not): not writable
        dest = Path(tempfile.mkdtemp())
        request.addfinalizer(lambda: shutil.rmtree(dest))
        dest.chmod(0o555)
    if reason == "No space left on device":
        dest = request.getfixturevalue("small_disk")
    script = f"""
import os, resource, signal, sys
from pathlib import Path
from mnist_pipeline.data.mirrors import DownloadError, RemoteFile, download_all
{DISK_FAILURES[reason]}
try:
    download_all([RemoteFile({REMOTE[0].name!r}, {REMOTE[0].sha256!r})], [{http_mirror!r}],
                 Path({str(dest)!r}), timeout=5)
except DownloadError as e:
    print(e)
    sys.exit(3)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert f"failed ({reason}); nothing was left half-written" in result.stdout
    assert list(dest.iterdir()) == []
