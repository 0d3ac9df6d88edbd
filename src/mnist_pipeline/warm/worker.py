"""The warm worker: imports torch & co. once, then forks a copy of itself for each stage handed to
it, until it has waited `idle` seconds for the next (see client.py).

    python -m mnist_pipeline.warm.worker IDLE_SECONDS     # started by mnist_pipeline.stage
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import io
import json
import os
import select
import signal
import socket
import struct
import sys
import traceback
from typing import NoReturn

import setproctitle

from mnist_pipeline import stage
from mnist_pipeline.warm import client

PR_SET_PDEATHSIG = 1  # linux/prctl.h: a signal for this process when its parent ends
# What the stages import that takes seconds (`python -X importtime`); never the project's code.
PRELOAD = ("torch", "pytorch_lightning", "mlflow", "mlflow.pyfunc",
           "mlflow.store.tracking.sqlalchemy_store", "matplotlib.pyplot", "hydra", "pandas",
           "scipy.stats", "PIL.Image")  # fmt: skip


def serve(idle: int) -> None:
    """Take the socket, import the libraries, then serve stages (a stage that connects while
    the worker imports waits for it: on 2 cores, importing torch & co. twice at once is slower)."""
    path = client.socket_path()
    lock = open(path.with_suffix(".lock"), "w")  # noqa: SIM115 held for this worker's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another worker for the same key is up, or starting
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # as cli.keep_private does
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)  # before importing: a stage that comes meanwhile waits in this queue
    try:
        for name in PRELOAD:
            __import__(name)
        warm_caches()
        import torch

        if torch.cuda.is_initialized():  # a fork could not use CUDA; queued stages run cold
            return
        accept(server, lock, idle)
    finally:
        path.unlink(missing_ok=True)


def accept(server: socket.socket, lock: io.TextIOWrapper, idle: int) -> None:
    """A supervisor for each stage, until `idle` seconds pass without one."""
    server.settimeout(idle)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the supervisors
    print(f"worker {os.getpid()}: ready", flush=True)
    while True:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            return
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] == os.getuid() and os.fork() == 0:
            server.close()
            lock.close()
            try:
                supervise(conn)
            except BaseException:  # a request cut off: to the worker's log
                traceback.print_exc()
            os._exit(1)  # never back into this loop, nor into serve's clean-up
        conn.close()


def warm_caches() -> None:
    """Work the libraries do once per process, which each stage would wait for: MLflow's map of
    installed packages, read to check a logged model's requirements (1.4 s; the worker's key
    changes with the packages), and matplotlib's first text drawn (its fonts, 0.2 s; the parser
    of the log axes' labels, 0.5 s)."""
    import matplotlib

    matplotlib.use("Agg")  # as the stages' figures do
    import matplotlib.pyplot as plt
    from mlflow.utils import requirements_utils

    getattr(requirements_utils, "_init_packages_to_modules_map", lambda: None)()  # private, 3.x
    figure = plt.figure(figsize=(1, 1))
    figure.text(0.5, 0.5, "0→9 100%")
    figure.text(0.5, 0.2, "$10^{2}$")  # a log axis's tick label
    figure.savefig(io.BytesIO(), format="png")
    plt.close(figure)


def supervise(conn: socket.socket) -> NoReturn:
    """In a fork: take the stage, fork it, report its pid and exit status; kill it if the caller
    goes first."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    header, streams, _, _ = socket.recv_fds(conn, 4, 3)
    with conn.makefile("rb") as stream:
        request = json.loads(stream.read(struct.unpack("!I", header)[0]))
    if gone(conn, peek=True):  # interrupted while the worker was importing: nothing to run
        os._exit(0)
    supervisor = os.getpid()
    pid = os.fork()
    if pid == 0:
        conn.close()
        become_stage(request, streams, supervisor)
    os.setpgid(pid, pid)  # as the stage does itself: whichever runs first, a kill finds the group
    for fd in streams:
        os.close(fd)
    print(f"worker {os.getppid()}: {request['module']} as {pid} in {request['cwd']}", flush=True)
    with contextlib.suppress(OSError):  # a caller gone meanwhile is seen below
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    ended = os.pidfd_open(pid)
    while ended not in select.select([ended, conn], [], [])[0]:
        if gone(conn):  # the caller died, and so does its stage, as a direct one would
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            break
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps({"status": status}).encode() + b"\n")
    os._exit(0)


def gone(conn: socket.socket, peek: bool = False) -> bool:
    """Has the caller closed its end? (It sends nothing after the request.)"""
    try:
        return not conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT if peek else 0)
    except BlockingIOError:
        return False
    except OSError:
        return True


def become_stage(request: dict, streams: list[int], supervisor: int) -> NoReturn:
    """Take on the caller's streams, folder, environment and arguments, and run the stage."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # ends with its supervisor
    if os.getppid() != supervisor:  # which ended already
        os._exit(1)
    os.setpgid(0, 0)
    name = request["module"].rsplit(".", 1)[1]
    title = [sys.executable, "-m", "mnist_pipeline.stage", name, *request["args"]]
    setproctitle.setproctitle(" ".join(title))  # before the environment changes: it moves it
    for target, fd in zip((0, 1, 2), streams, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = request["path0"]
    encoding = sys.stdout.encoding  # from the worker's settings, the stage's (keyed)
    sys.stdin = sys.__stdin__ = open(0, encoding=encoding, closefd=False)  # noqa: SIM115
    unbuffered = sys.__stdout__.write_through  # the worker's own: the same settings, keyed
    sys.stdout = sys.__stdout__ = text_stream(1, encoding, os.isatty(1), unbuffered, "strict")
    sys.stderr = sys.__stderr__ = text_stream(2, encoding, True, unbuffered, "backslashreplace")
    stage.run_module(request["module"], request["args"])


def text_stream(
    fd: int, encoding: str, line: bool, unbuffered: bool, errors: str
) -> io.TextIOWrapper:
    """Standard output or error on a new file, as Python makes them at start-up: line-buffered on
    a terminal (standard error always), unbuffered under `python -u` or PYTHONUNBUFFERED."""
    raw = open(fd, "wb", buffering=0 if unbuffered else -1, closefd=False)  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding, errors, line_buffering=line, write_through=unbuffered)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
    os._exit(0)  # the lock goes now, not after 2 s of tearing torch down: a new worker may start
