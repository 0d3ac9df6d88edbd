"""What one image costs the front ends at most: time and peak memory per image, and the REST
server's peak memory under parallel requests of the largest image it accepts.

Per image: each case decoded and preprocessed (`serving/images.py`, what predict, REST and the
page all run) in a fresh process, which reports its time and its peak resident memory above what
it held before. With `--before REV`, the same cases also run on the package of another commit
(checked out into a temporary git worktree), in the same run.

REST: `mlflow models serve` on the last registered model (alias `candidate`, from `make repro`),
then `--parallel` requests of the largest accepted picture at once; the server's process tree is
sampled every 20 ms for its resident memory.

    python benchmarks/serving_limits.py
    python benchmarks/serving_limits.py --before a79648f --rest-port 5077
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from servers import wait_until_healthy  # noqa: E402  (tests/ is not a package)

CASES = {  # name: (width, height, mode, format)
    "canvas 280x280 PNG": (280, 280, "L", "PNG"),
    "5000x5000 RGBA PNG (largest accepted)": (5000, 5000, "RGBA", "PNG"),
    "8000x6000 JPEG (48 MP photo)": (8000, 6000, "RGB", "JPEG"),
    "9400x9400 PNG (a 116 KB bomb)": (9400, 9400, "L", "PNG"),
}
LARGEST = "5000x5000 RGBA PNG (largest accepted)"


def picture(case: str) -> bytes:
    """A one stroke digit on white paper, of the case's size, mode and format."""
    width, height, mode, fmt = CASES[case]
    image = Image.new(mode, (width, height), "white")
    pen = ImageDraw.Draw(image)
    pen.line([(width * 0.45, height * 0.2), (width * 0.55, height * 0.8)], "black", width // 40)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def measure_here(case: str) -> None:
    """In the child process: one image through the package on sys.path; a JSON line out."""
    from mnist_pipeline.serving.images import ImageError, load

    data = picture(case)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        load(data, case)
        outcome = "predicted"
    except ImageError as e:
        outcome = "refused: " + str(e).split(": ", 1)[1][:70]
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = {"kb": len(data) / 1e3, "s": seconds, "mb": (peak - before) / 1024, "out": outcome}
    print(json.dumps(report))


def measure(case: str, src: Path) -> dict:
    env = os.environ | {"PYTHONPATH": str(src)}
    done = subprocess.run(
        [sys.executable, __file__, "--child", case], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"{case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def worktree(rev: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="serving-before-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), rev], cwd=REPO, check=True,
                   capture_output=True)  # fmt: skip
    return folder


def rest(port: int, parallel: int) -> None:
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{REPO / 'mlflow.db'}"}
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", "models:/mnist-classifier@candidate",
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until_healthy(server, port, seconds=180)
        small, largest = picture("canvas 280x280 PNG"), picture(LARGEST)
        post(port, small)  # warm: the model loaded, the first request served
        time.sleep(1)
        idle = tree_rss(server.pid)
        peak, stop = [idle], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(tree_rss(server.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            statuses = list(pool.map(lambda _: post(port, largest), range(parallel)))
        seconds = time.perf_counter() - started
        stop.set()
        sampler.join()
        print(
            f"REST, {parallel} parallel requests of the {LARGEST.split(' (')[0]} "
            f"({len(largest) / 1e3:.0f} KB, HTTP {sorted(set(statuses))}): server {idle:.0f} MB "
            f"idle, {max(peak):.0f} MB at its peak (+{max(peak) - idle:.0f} MB), {seconds:.1f} s"
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def post(port: int, data: bytes) -> int:
    body = json.dumps({"inputs": {"image": [base64.b64encode(data).decode()]}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def tree_rss(pid: int) -> float:
    """Resident MB of the process and its children."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REV", help="also measure this commit's package")
    parser.add_argument("--rest-port", type=int, help="measure `mlflow models serve` on this port")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure_here(args.child)
        return
    arms = {"now": REPO / "src"}
    if args.before:
        arms[args.before] = worktree(args.before) / "src"
    try:
        for case in CASES:
            for arm, src in arms.items():
                r = measure(case, src)
                print(f"{case:40s} {arm:8s} {r['kb']:7.0f} KB {r['s']:6.2f} s +{r['mb']:6.0f} MB "
                      f"{r['out']}", flush=True)  # fmt: skip
    finally:
        if args.before:
            subprocess.run(["git", "worktree", "remove", "--force", str(arms[args.before].parent)],
                           cwd=REPO, check=False)  # fmt: skip
    if args.rest_port:
        rest(args.rest_port, args.parallel)


if __name__ == "__main__":
    main()
