"""The stage's side of the warm worker: find it, hand it the stage, wait for the end, or start it.

The worker is the pattern of Gradle's daemon and Android's zygote; no maintained library does it
for a `python -m` command, hence these lines. What keeps a warm stage the same as a fresh one:
- the worker imports third-party libraries only: each stage imports the project's code afresh, so
  an edit is always seen;
- a worker serves only stages started with the same interpreter, installed packages, interpreter
  flags, import-time settings (`PYTHON*`, `OMP_*`, `CUDA_*`, ...) and launcher code: its socket is
  named by a hash of them all;
- the stage gets the caller's folder, arguments, environment, umask and standard streams; its exit
  status comes back; Ctrl-C, SIGTERM and SIGHUP are passed on; it is killed, with its process group,
  when the caller dies; `ps` shows it under the stage's command line.
Safe by default: the socket lies in a folder only its owner can open, the worker serves no other
user, and it gets none of the environment but the settings it hashes (no secrets). Off under
torchrun and Slurm (their launchers watch the processes they start) and on systems other than Linux.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_IDLE = 600  # seconds an idle worker waits for the next stage
# The environment read while torch & co. are imported: a worker serves only stages that agree on it.
IMPORT_SETTINGS = ("PYTHON", "OMP_", "MKL_", "KMP_", "CUDA_", "TORCH", "PYTORCH_", "NVIDIA_",
                   "MPL", "LD_", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")  # fmt: skip
UNDER_LAUNCHERS = ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID")
LISTENS_WITHIN = 30  # seconds from a worker's start to its socket, on a busy machine
STARTS_WITHIN = 300  # seconds from handing a stage over to its start: the worker's imports, loaded
UNIX_PATH_MAX = 108  # bytes in a socket's path, its final NUL included (Linux's sockaddr_un)
LAUNCHER_CODE = [Path(__file__).parents[1] / "stage.py", *Path(__file__).parent.glob("*.py")]


def idle_seconds() -> int:
    """MNIST_PIPELINE_WARM: 0 turns the worker off, a number sets how long it waits idle."""
    value = os.environ.get("MNIST_PIPELINE_WARM", str(DEFAULT_IDLE)).strip()
    if not value.isdigit():
        raise SystemExit(
            f"error: MNIST_PIPELINE_WARM={value!r}: give 0 (no warm worker) or the seconds an "
            "idle worker waits for the next stage."
        )
    if sys.platform != "linux" or any(name in os.environ for name in UNDER_LAUNCHERS):
        return 0
    return int(value)


def import_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(IMPORT_SETTINGS)}


def socket_path() -> Path | None:
    """This interpreter's worker socket, in a private folder; None if that folder is not private
    or the path is too long for a socket."""
    home = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    folder = home / f"mnist-pipeline-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if not folder.is_dir() or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None
    # sys.path[0] is the caller's folder under `python -m`; an install touches its site folder.
    installed = [(p, os.stat(p).st_mtime_ns) for p in sys.path[1:] if os.path.isdir(p)]
    flags = [repr(sys.flags), sys.warnoptions, sys._xoptions]  # `python -W ... -X ...`
    key = [sys.executable, sys.version, flags, installed, sorted(import_settings().items())]
    digest = hashlib.sha256(json.dumps(key).encode())
    for code in sorted(LAUNCHER_CODE):
        digest.update(code.read_bytes())
    path = folder / f"{digest.hexdigest()[:20]}.sock"
    return path if len(os.fsencode(path)) < UNIX_PATH_MAX else None  # a deep TMPDIR: run cold


def run_warm(path: Path, module: str, args: list[str], idle: int) -> int | None:
    """The stage run by the worker, started first if none is up: its exit status, or None if no
    worker took it (the caller runs the stage itself)."""
    try:
        conn = connect(path) or start_worker(path, idle)
        return hand_over(conn, module, args) if conn else None
    except KeyboardInterrupt:  # while the worker starts or imports: the stage has not started
        stage = module.rsplit(".", 1)[1]
        print(f"error: {stage} interrupted (Ctrl-C) before it started.", file=sys.stderr)
        return 128 + signal.SIGINT


def connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:  # none up, or a stale socket
        conn.close()
        return None
    return conn


def hand_over(conn: socket.socket, module: str, args: list[str]) -> int | None:
    """Send the stage, wait for its end (the worker may be importing still): its exit status,
    or None if the worker ended before taking it."""
    umask = os.umask(0)
    os.umask(umask)
    request = {"module": module, "args": args, "cwd": os.getcwd(), "umask": umask,
               "env": dict(os.environ), "path0": sys.path[0]}  # fmt: skip
    payload = json.dumps(request).encode()
    replies = conn.makefile("r")
    try:
        with open(os.devnull) as null:  # for a stream the caller has closed
            streams = [fd if valid(fd) else null.fileno() for fd in (0, 1, 2)]
            socket.send_fds(conn, [struct.pack("!I", len(payload))], streams)
        conn.sendall(payload)
        conn.settimeout(STARTS_WITHIN)  # a worker stuck in its imports must not stall the stage
        started = replies.readline()
        conn.settimeout(None)
    except TimeoutError:
        print(
            f"warning: the warm worker took no stage in {STARTS_WITHIN} s; running this one in "
            "its own process (MNIST_PIPELINE_WARM=0 skips the worker).",
            file=sys.stderr,
        )
        replies.close()
        conn.close()  # so that the worker, when it gets to it, sees the caller gone
        return None
    except OSError:
        started = ""
    if not started:
        return None  # the worker ended (idle, or CUDA) before forking: the caller runs the stage
    pid = json.loads(started)["pid"]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda sig, frame: forward(pid, sig))
    ended = replies.readline()
    if not ended:
        print(
            "error: the warm worker running this stage ended before it; run the stage again, or "
            "set MNIST_PIPELINE_WARM=0 to run each stage in a process of its own.",
            file=sys.stderr,
        )
        return 1
    status = json.loads(ended)["status"]  # as os.waitstatus_to_exitcode: -N for signal N
    if status < 0:  # end the same way, so that the caller sees the signal
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return 128 - status if status < 0 else status


def forward(pid: int, sig: int) -> None:
    """To the stage's process group, as a terminal's Ctrl-C reaches a stage and its children."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def valid(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def start_worker(path: Path, idle: int) -> socket.socket | None:
    """A worker in the background, in a session of its own, holding none of the caller's streams
    (DVC waits for them to close) nor its secrets; connected to once it listens, which it does
    within a second, before importing. None if it ended first: another worker took its place."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "XDG_RUNTIME_DIR")
    env = {k: v for k, v in os.environ.items() if k in keep} | import_settings()
    command = [sys.executable, "-m", "mnist_pipeline.warm.worker", str(idle)]
    with open(path.with_suffix(".log"), "ab") as log:
        worker = subprocess.Popen(command, cwd="/", env=env, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=log, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + LISTENS_WITHIN
    while worker.poll() is None and time.monotonic() < deadline:
        if conn := connect(path):
            return conn
        time.sleep(0.02)
    return connect(path)
