"""Fault injection: the real pipeline on the real MNIST, through faults a user meets.

For each fault it prints what the user saw and whether any data or result was lost. It works in a
temporary copy of the repo, against mirrors and an MLflow server it starts on 127.0.0.1. Not part
of the test suite (it trains on all of MNIST several times): run `make faults`, with
MNIST_MIRROR pointing at a folder of the four MNIST .gz files.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from servers import free_port, start_mlflow_server  # noqa: E402
from workspace import clean_env, commit, copy_repo  # noqa: E402


def mirror_dir() -> Path:
    location = os.environ.get("MNIST_MIRROR", str(REPO.parent / "shared" / "datasets" / "mnist"))
    return Path(location.removeprefix("file://"))


class Mirror:
    """An HTTP server on 127.0.0.1 whose GET of `<name>.gz` is answered by `respond`."""

    def __init__(self, respond: Callable[[http.server.BaseHTTPRequestHandler, str], None]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                respond(self, self.path.lstrip("/"))

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"


def send(handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def serve_real(folder: Path) -> Callable:
    return lambda h, name: send(h, (folder / name).read_bytes())


def stall(h: http.server.BaseHTTPRequestHandler, name: str) -> None:
    time.sleep(60)  # accept, then say nothing


def corrupt(h: http.server.BaseHTTPRequestHandler, name: str) -> None:
    send(h, gzip.compress(os.urandom(4096)))  # valid gzip, wrong bytes


def truncated(folder: Path) -> Callable:
    return lambda h, name: send(h, (folder / name).read_bytes()[:100_000])


class Workspace:
    """A fresh clone-like copy of the repo, with its own git history and MLflow store."""

    def __init__(self, root: Path) -> None:
        self.root = copy_repo(root)
        self.env = clean_env()
        commit(root, self.env, "baseline")

    def set_mirrors(self, *urls: str) -> None:
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        params["data"]["mirrors"] = list(urls)
        params["data"]["timeout_s"] = 3
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def run(self, *cmd: str, **env: str) -> tuple[int, str, float]:
        started = time.monotonic()
        result = subprocess.run(
            cmd, cwd=self.root, env=self.env | env, capture_output=True, text=True, timeout=900
        )
        return result.returncode, result.stdout + result.stderr, time.monotonic() - started

    def raw_verified(self, missing: str | None = None) -> bool:
        """The four raw files, less the one named `missing`, are there, each with its checksum;
        `missing` is not there."""
        params = yaml.safe_load((self.root / "params.yaml").read_text())
        files = [
            (self.root / "data/raw" / f["name"], f["sha256"])
            for f in params["data"]["files"].values()
            if f["name"] != missing
        ]
        if missing and (self.root / "data/raw" / missing).exists():
            return False
        return all(
            path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256
            for path, sha256 in files
        )

    def test_acc(self) -> float:
        return json.loads((self.root / "reports/metrics.json").read_text())["test"]["acc"]

    def mlflow_runs(self, uri: str) -> list:
        import mlflow

        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name("mnist")
        return client.search_runs([experiment.experiment_id]) if experiment else []


def first_error(output: str) -> str:
    """The stage's own error line if it failed, else its first warning."""
    lines = output.splitlines()
    for prefixes in (("error:",), ("WARNING mnist_pipeline",)):
        for line in lines:
            if line.startswith(prefixes):
                return line[:160]
    return "(no error)"


def kill_when(path: Path, pattern: str, cwd: Path) -> threading.Event:
    """SIGKILL the processes running in `cwd` whose command line holds `pattern`, once `path`
    exists; set the returned event to give up."""
    stop = threading.Event()

    def watch() -> None:
        while not path.exists():
            if stop.wait(0.05):
                return
        time.sleep(0.5)
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
        for pid in found.split():
            with contextlib.suppress(OSError):  # gone already, or not ours to read
                if Path(f"/proc/{pid}/cwd").resolve() == cwd.resolve():
                    os.kill(int(pid), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    return stop


def main() -> None:
    real = mirror_dir()
    if not (real / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"no MNIST mirror at {real}: set MNIST_MIRROR to a folder of the four .gz files")
    good = Mirror(serve_real(real))
    rows: list[tuple[str, str, str, float]] = []

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "repo")

        ws.set_mirrors(Mirror(stall).url, good.url)
        rc, out, took = ws.run("dvc", "repro", "download")
        ok = rc == 0 and ws.raw_verified()
        rows.append(
            ("stalling mirror, then a good one", first_error(out), "no" if ok else "YES", took)
        )

        (ws.root / "data/raw/t10k-labels-idx1-ubyte").unlink()
        ws.set_mirrors(Mirror(corrupt).url, Mirror(truncated(real)).url, good.url)
        rc, out, took = ws.run("dvc", "repro", "-f", "download")
        ok = rc == 0 and ws.raw_verified()
        rows.append(
            (
                "corrupt and truncated mirrors, then a good one",
                first_error(out),
                "no" if ok else "YES",
                took,
            )
        )

        (ws.root / "data/raw/t10k-labels-idx1-ubyte").unlink()
        ws.set_mirrors(Mirror(corrupt).url)
        rc, out, took = ws.run("dvc", "repro", "-f", "download")
        kept = ws.raw_verified(missing="t10k-labels-idx1-ubyte")
        rows.append(
            (
                "only a corrupt mirror (3 good files on disk)",
                first_error(out),
                "no (3 files kept)" if rc != 0 and kept else "YES",
                took,
            )
        )
        ws.set_mirrors(good.url)
        ws.run("dvc", "repro", "download")

        rc, out, took = ws.run("dvc", "repro")
        reference = ws.test_acc() if rc == 0 else float("nan")
        reference_runs = len(ws.mlflow_runs(f"sqlite:///{ws.root / 'mlflow.db'}"))

        ws.set_mirrors(good.url, "https://example.invalid/")  # reruns nothing: not a train param
        (ws.root / "params.yaml").write_text(
            (ws.root / "params.yaml").read_text().replace("seed: 42", "seed: 43")
        )
        watcher = kill_when(
            ws.root / ".checkpoints/train/last.ckpt", "mnist_pipeline.train --params", ws.root
        )
        rc1, out1, took1 = ws.run("dvc", "repro")
        watcher.set()
        rc2, _, took2 = ws.run("dvc", "repro")
        runs = ws.mlflow_runs(f"sqlite:///{ws.root / 'mlflow.db'}")
        resumed = [r for r in runs if r.data.tags.get("resumed") == "true"]
        acc = ws.test_acc() if rc2 == 0 else float("nan")
        ok = rc1 != 0 and rc2 == 0 and len(runs) == reference_runs + 1 and len(resumed) == 1
        rows.append(
            (
                "SIGKILL during training, then dvc repro again",
                f"killed (exit {rc1}); rerun resumed the same MLflow run; test acc {acc:.4f} "
                f"(uninterrupted, seed 42: {reference:.4f})",
                "no" if ok and acc >= 0.99 else "YES",
                took1 + took2,
            )
        )

        port = free_port()
        uri = f"http://127.0.0.1:{port}"
        store = Path(tmp) / "server"
        store.mkdir()
        server = start_mlflow_server(store, port)
        (ws.root / "params.yaml").write_text(
            (ws.root / "params.yaml").read_text().replace("seed: 43", "seed: 44")
        )

        def stop_server() -> None:
            while not (ws.root / ".checkpoints/train/last.ckpt").exists():
                time.sleep(0.05)
            os.killpg(server.pid, signal.SIGKILL)

        threading.Thread(target=stop_server, daemon=True).start()
        rc1, out1, took1 = ws.run("dvc", "repro", MLFLOW_TRACKING_URI=uri)
        server.wait()
        saved = (ws.root / "models/model.pt").exists()
        epochs = len((ws.root / "reports/training.csv").read_text().splitlines()) - 1
        server = start_mlflow_server(store, port)
        rc2, _out2, took2 = ws.run("dvc", "repro", MLFLOW_TRACKING_URI=uri)
        runs = ws.mlflow_runs(uri)
        os.killpg(server.pid, signal.SIGKILL)
        ok = rc1 != 0 and saved and rc2 == 0 and len(runs) == 1
        rows.append(
            (
                "tracking server killed mid-run, restarted, dvc repro again",
                f"{first_error(out1)} | model saved: {saved}, {epochs} epochs in training.csv; "
                f"rerun logged into the same run: {len(runs) == 1}",
                "no" if ok else "YES",
                took1 + took2,
            )
        )

    print("\n| fault | what the user saw | lost anything? | seconds |\n|---|---|---|---:|")
    for fault, saw, lost, took in rows:
        print(f"| {fault} | {saw} | {lost} | {took:.0f} |")
    sys.exit(1 if any(lost.startswith("YES") for _, _, lost, _ in rows) else 0)


if __name__ == "__main__":
    main()
