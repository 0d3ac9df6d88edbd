"""What does one experiment cost beyond training? `dvc exp run -S optimizer.lr=0.002`, timed.

A clean clone of this repo's last commit (its data restored from this repo's DVC cache: run
`make repro` here first, nothing is downloaded) runs two experiments one after the other: the
first also creates the MLflow store, the second is what every later experiment costs. Each stage
is an ordinary process, as dvc.yaml runs it. For each experiment it prints the wall time of the
whole `dvc exp run`, of Lightning's fit loop (the run's `fit_seconds`) and of what is left, stage
by stage, and the train stage's peak resident memory.

    python benchmarks/turnaround.py                       # optimizer.lr=0.002, two experiments
    python benchmarks/turnaround.py -S model=cnn --runs 1 # any `dvc exp run -S` overrides
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def clean_clone(dest: Path, env: dict[str, str]) -> Path:
    """This repo's HEAD, its DVC outputs checked out from this repo's cache (no download)."""
    run(["git", "clone", "-q", str(REPO), str(dest)], REPO, env)
    run(["dvc", "cache", "dir", "--local", str(REPO / ".dvc" / "cache")], dest, env)
    run(["dvc", "checkout", "-q"], dest, env)
    return dest


class PeakMemory(threading.Thread):
    """The largest resident set of any process running the train stage, sampled every 0.1 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.done = 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            for p in psutil.process_iter(["cmdline", "memory_info"]):
                if "mnist_pipeline.train --params" in " ".join(p.info["cmdline"] or []):
                    self.peak = max(self.peak, p.info["memory_info"].rss)


def exp_run(root: Path, env: dict[str, str], overrides: list[str]) -> dict:
    """One `dvc exp run`, its output lines time-stamped as they arrive."""
    args = [a for o in overrides for a in ("-S", o)]
    memory = PeakMemory()
    memory.start()
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["dvc", "exp", "run", *args], cwd=root, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    lines = [(time.perf_counter() - start, line.rstrip()) for line in proc.stdout]
    wall = time.perf_counter() - start
    memory.done.set()
    if proc.wait() != 0:
        sys.exit("dvc exp run failed:\n" + "\n".join(line for _, line in lines[-30:]))
    return {"wall": wall, "lines": lines, "peak_rss": memory.peak}


def stage_walls(lines: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """From "Running stage 'x'" to the next stage's start (or DVC's own closing lines)."""
    starts = [
        (t, m.group(1)) for t, line in lines if (m := re.search(r"Running stage '(.+)'", line))
    ]
    ends = [t for t, line in lines if "Updating lock file" in line]
    walls = {}
    for i, (t, name) in enumerate(starts):
        later = [e for e in ends if e >= t]
        end = later[0] if later else (starts[i + 1][0] if i + 1 < len(starts) else wall)
        walls[name] = end - t
    return walls


def fit_seconds(root: Path, env: dict[str, str]) -> float:
    """The `fit_seconds` metric of the run the last experiment trained."""
    code = (
        "import json, mlflow; r = json.load(open('models/mlflow_run.json'));"
        "print(mlflow.get_run(r['run_id']).data.metrics['fit_seconds'])"
    )
    return float(run([sys.executable, "-c", code], root, env).strip().splitlines()[-1])


def report(label: str, result: dict, fit: float) -> None:
    walls = stage_walls(result["lines"], result["wall"])
    rest = result["wall"] - fit
    print(f"\n{label}")
    print(f"  dvc exp run, whole                   {result['wall']:6.1f} s")
    print(f"  fit (Lightning's loop)               {fit:6.1f} s")
    print(f"  not training (whole - fit)           {rest:6.1f} s   target <= 15 s")
    print(f"    DVC itself (outside any stage)     {result['wall'] - sum(walls.values()):6.1f} s")
    for name, seconds in walls.items():
        own = seconds - fit if name == "train" else seconds
        print(f"    {name + (' outside fit' if name == 'train' else ''):34s} {own:6.1f} s")
    print(
        f"  train stage peak RSS                 {result['peak_rss'] / 1e9:6.2f} GB  target <= 0.8"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-S", dest="overrides", action="append", help="dvc exp run -S ...")
    parser.add_argument("--runs", type=int, default=2, help="experiments in a row")
    args = parser.parse_args()
    overrides = args.overrides or ["optimizer.lr=0.002"]
    with tempfile.TemporaryDirectory(prefix="turnaround-") as tmp:
        root = Path(tmp) / "clone"
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # this venv's dvc
        env = {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1", "DVC_NO_ANALYTICS": "1",
               "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
        env.pop("MLFLOW_TRACKING_URI", None)  # the clone's own embedded store
        clean_clone(root, env)
        print(f"{os.cpu_count()} CPUs; dvc exp run -S {' -S '.join(overrides)}")
        for i in range(args.runs):
            result = exp_run(root, env, overrides)
            label = "first experiment (creates mlflow.db)" if i == 0 else f"experiment {i + 1}"
            report(label, result, fit_seconds(root, env))
            overrides = [*overrides[:-1], bump(overrides[-1], i)]  # a new point, not a rerun


def bump(override: str, i: int) -> str:
    """The same key, another value, so that DVC runs the next experiment instead of restoring
    this one from its run cache."""
    key, _, value = override.partition("=")
    try:
        return f"{key}={float(value) * 1.01 ** (i + 1):.6g}"
    except ValueError:
        return override


if __name__ == "__main__":
    main()
