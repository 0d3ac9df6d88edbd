"""Real servers on 127.0.0.1 for the tests and the fault-injection run."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(folder: Path, port: int) -> subprocess.Popen:
    """`mlflow server` with a SQLite backend and proxied artifacts in `folder`, once it answers.

    One worker and no job runner: ready in seconds. It runs in its own process group, so a
    fault can kill it whole (`os.killpg`).
    """
    env = os.environ | {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    server = subprocess.Popen(
        ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    return wait_until_healthy(server, port)


def wait_until_healthy(
    server: subprocess.Popen, port: int, seconds: float = 60
) -> subprocess.Popen:
    """`server` once it answers /health; stopped, and an error, if it dies or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                stop_mlflow_server(server)
                raise RuntimeError("mlflow server did not start") from None
            time.sleep(0.5)


def stop_mlflow_server(server: subprocess.Popen) -> None:
    """Stop the whole process group: `mlflow server` runs its app in a child process (uvicorn)
    that outlives a signal sent to the `mlflow` command alone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)
