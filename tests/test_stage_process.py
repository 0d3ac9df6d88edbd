"""A stage is an ordinary child process of `dvc`, as a reader of dvc.yaml expects: in its process
tree, with its caller's environment."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipeline_repo import make_repo

pytestmark = pytest.mark.slow


def ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


def stage_pids(name: str, cwd: Path) -> list[int]:
    """The processes running `name` in `cwd` (other tests may run the same stage elsewhere)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if name in command and (proc / "cwd").resolve() == cwd.resolve():
                found.append(int(proc.name))
    return found


def test_the_stage_is_a_child_of_dvc(tmp_path: Path) -> None:
    """While `download` waits on a mirror that says nothing, its process is a descendant of the
    `dvc repro` that started it: `ulimit`, `/usr/bin/time`, cgroups and a CI's clean-up of leftover
    processes see it."""

    class Silent(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(20)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root, env = make_repo(tmp_path, f"http://127.0.0.1:{server.server_address[1]}/")
    dvc = subprocess.Popen(
        ["dvc", "repro", "download"], cwd=root, env=env, stdout=subprocess.PIPE, text=True
    )
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not (pids := stage_pids("mnist_pipeline.download", root)):
            assert time.monotonic() < deadline and dvc.poll() is None, "the stage never started"
            time.sleep(0.1)
        assert all(dvc.pid in ancestors(pid) for pid in pids), (dvc.pid, pids)
    finally:
        for pid in [*pids, dvc.pid]:  # the stage first: killing dvc would orphan it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        dvc.communicate()
        server.shutdown()


def test_the_stage_reads_the_callers_environment(tmp_path: Path, http_mirror: str) -> None:
    """LOG_LEVEL given to `dvc repro` is the stage's: an unknown level is refused by the stage."""
    root, env = make_repo(tmp_path, http_mirror)
    result = subprocess.run(
        ["dvc", "repro", "download"],
        cwd=root,
        env=env | {"LOG_LEVEL": "LOUD"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "LOG_LEVEL='LOUD'" in result.stdout + result.stderr
