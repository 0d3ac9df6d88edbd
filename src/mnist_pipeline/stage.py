"""Run a pipeline stage: the commands of dvc.yaml, in a warm worker when one is up.

    python -m mnist_pipeline.stage train --params params.yaml  # = mnist_pipeline.train
    MNIST_PIPELINE_WARM=0 dvc repro     # every stage in a fresh process of its own
    MNIST_PIPELINE_WARM=1800 dvc repro  # an idle worker waits 30 minutes (default 600 s)

A stage spends its first 10 s importing torch, Lightning, MLflow and matplotlib, and its last 2 s
tearing them down: 12 s a stage, three or four stages an experiment. This launcher cuts both:
- the end: a stage's process exits once its threads are joined and its atexit handlers have run,
  without Python's module-by-module teardown;
- the start: each stage is run by a fork of a warm worker (mnist_pipeline/warm/), which imported
  the libraries once. The first stage that finds none starts one and waits for its imports,
  instead of importing the same beside it.
What a stage computes and writes is the same either way (tests/test_stage.py).
"""

from __future__ import annotations

import atexit
import os
import runpy
import signal
import sys
import threading
import traceback
from typing import NoReturn

from mnist_pipeline.warm import client

STAGES = ("check", "download", "preprocess", "train", "evaluate")


def main(argv: list[str]) -> NoReturn:
    if not argv or argv[0] not in STAGES:
        raise SystemExit(f"usage: python -m mnist_pipeline.stage {{{','.join(STAGES)}}} [ARGS]")
    module = f"mnist_pipeline.{argv[0]}"
    idle = client.idle_seconds()
    if idle and (path := client.socket_path()):
        code = client.run_warm(path, module, argv[1:], idle)
        if code is not None:
            sys.exit(code)
    run_module(module, argv[1:])


def run_module(module: str, args: list[str]) -> NoReturn:
    """`python -m module *args`, ended as Python ends it, less the 2 s of tearing down torch's,
    Lightning's and MLflow's modules (measured): threads are joined, atexit handlers run (logging,
    MLflow, temporary files) and the streams flushed. A stage has closed every output by then
    (they are written atomically). It never returns: in the warm worker's fork, nothing after it
    may run."""
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code: object = 0
    except SystemExit as end:
        code = end.code
    except BaseException as error:  # as Python ends on one: its traceback, then 1 (130: Ctrl-C)
        traceback.print_exception(error)
        code = 128 + signal.SIGINT if isinstance(error, KeyboardInterrupt) else 1
    if not isinstance(code, int):  # `sys.exit("message")` or `sys.exit()`, as Python takes them
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    threading._shutdown()  # what Python's exit does first: non-daemon threads, thread pools
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
