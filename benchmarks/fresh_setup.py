"""First run on a fresh machine: `make repro` from a fresh clone, split into its two parts.

A clone of this repo's last commit, with empty uv and pip caches (a fresh machine has none), runs
`make install` (the virtual environment: scripts/install-venv) and then `make repro` (the pipeline
on the real MNIST from MNIST_MIRROR). Prints both, and the ratio of the whole to its `dvc repro`
part (target: at most 2). `--compare-pip` also times the same install with pip alone.

    MNIST_MIRROR=file:///path/to/mnist python benchmarks/fresh_setup.py [--compare-pip]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    print(f"  {' '.join(cmd):34s} {time.perf_counter() - start:6.1f} s", flush=True)
    return time.perf_counter() - start


def fresh_env(tmp: Path, **extra: str) -> dict[str, str]:
    """This environment minus any virtual environment, with empty installer caches."""
    venv = os.environ.get("VIRTUAL_ENV")
    path = [p for p in os.environ["PATH"].split(os.pathsep) if not venv or not p.startswith(venv)]
    path = [p for p in path if not p.startswith(str(REPO))]  # this repo's .venv/bin
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return env | {
        "PATH": os.pathsep.join(path),
        "UV_CACHE_DIR": str(tmp / "uv-cache"),
        "PIP_CACHE_DIR": str(tmp / "pip-cache"),
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compare-pip", action="store_true", help="also time pip alone")
    args = parser.parse_args()
    if "MNIST_MIRROR" not in os.environ:
        sys.exit("set MNIST_MIRROR to the MNIST mirror (README), as for make repro")
    with tempfile.TemporaryDirectory(prefix="fresh-setup-") as tmp:
        root = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
        print(
            f"fresh clone of {REPO.name} at {root}, empty installer caches, {os.cpu_count()} CPUs"
        )
        if args.compare_pip:
            timed(
                ["make", "install", "VENV=.venv-pip"], root, fresh_env(Path(tmp), INSTALLER="pip")
            )
            shutil.rmtree(root / ".venv-pip")
        env = fresh_env(Path(tmp))
        install = timed(["make", "install"], root, env)
        repro = timed(["make", "repro"], root, env)
        print(f"  make repro on a fresh clone         {install + repro:6.1f} s")
        print(
            f"  ratio to its dvc repro part         {(install + repro) / repro:6.2f}   target <= 2"
        )


if __name__ == "__main__":
    main()
