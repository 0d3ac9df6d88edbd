"""Running a command: its logging set up, its known failures and interrupts as one paragraph and
an exit status, never a traceback or a credential. Stages (`run_stage`), ad-hoc runs and sweeps
(`reported`) all end this way."""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from mnist_pipeline.runtime.logs import add_verbosity, log_level, setup_logging
from mnist_pipeline.runtime.privacy import keep_private
from mnist_pipeline.runtime.workspace import WrongCheckout, check_workspace_code
from mnist_pipeline.utils.errors import Terminated, interruption
from mnist_pipeline.utils.redact import redact


class Reported(SystemExit):
    """The exit of a failure already said in one paragraph."""


def raise_terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as `Terminated`, but never inside a finalizer (a `__del__` the garbage collector
    runs at any moment, such as a Lightning profiler's): Python reports an exception raised
    there and goes on, so the SIGTERM would be lost and the run would go on to its end. It is
    raised 50 ms later instead: SIGALRM comes back here."""
    if in_finalizer(frame):
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        return
    raise Terminated


def in_finalizer(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def reported(stage: str, expected: tuple[type[BaseException], ...], again: str) -> Iterator[None]:
    """An expected failure prints one clear paragraph and exits 1, an interrupt one line and 130
    (Ctrl-C) or 143 (SIGTERM); no traceback, no credential. `again` says how to go on after an
    interrupt. Stages, ad-hoc runs and sweeps all end this way.

    The heavy commands (train, evaluate) import torch, Lightning and MLflow with the garbage
    collector off: imports make next to no garbage, and its passes over their growing heap are a
    fifth of train's start (docs/results.md). It is back on from here, with what the imports
    made frozen (it lives until exit, so no pass need scan it again). Only then: a sweep runs its
    jobs here one after another, and freezing a finished job's leftovers would keep them for good.
    """
    if not gc.isenabled():  # right after a heavy command's imports
        gc.freeze()
        gc.enable()
    keep_private()
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, raise_terminated):  # not another's
        with contextlib.suppress(ValueError):  # only the main thread may; a launcher's job may not
            signal.signal(signal.SIGTERM, raise_terminated)
            signal.signal(signal.SIGALRM, raise_terminated)  # a SIGTERM put off (above)
    try:
        check_workspace_code()
        yield
    except Reported:  # by a `reported` within this one (an ad-hoc run's job, inside Hydra)
        raise
    except BaseException as e:
        code = interruption(e)
        if code is not None:
            how = "Ctrl-C" if code == 128 + signal.SIGINT else "SIGTERM"
            print(
                f"error: {stage} interrupted ({how}); nothing half-written was kept. {again}",
                file=sys.stderr,
            )
            raise Reported(code) from None
        if not isinstance(e, (*expected, WrongCheckout)):
            raise
        print(f"error: {redact(' '.join(str(e).split()))}", file=sys.stderr)
        raise Reported(1) from None


def run_stage(
    main: Callable[..., None],
    *expected: type[BaseException],
    parser: argparse.ArgumentParser | None = None,
) -> None:
    """Run a command: its arguments parsed (`parser`'s, and everyone's -q/-v) and given to `main`
    as keywords, the project's logging set up, its errors `reported`."""
    script = Path(sys.argv[0])  # `python -m mnist_pipeline.demo`: .../demo/__main__.py
    stage = script.parent.name if script.stem == "__main__" else script.stem
    parser = parser or argparse.ArgumentParser(prog=f"python -m mnist_pipeline.{stage}")
    add_verbosity(parser)
    arguments = vars(parser.parse_args())
    level = log_level(arguments.pop("verbosity"))
    setup_logging(level)
    log = logging.getLogger(__name__)
    log.debug("%s: starting in %s (python %s)", stage, os.getcwd(), sys.version.split()[0])
    started = time.perf_counter()
    again = "Run `dvc repro` again to go on (a training resumes from its last epoch)."
    with contextlib.ExitStack() as quiet, reported(stage, expected, again):
        if level >= logging.WARNING:  # no progress output either: prints, progress bars
            quiet.enter_context(
                contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w")))
            )
        main(**arguments)
    log.debug("%s: done in %.1f s", stage, time.perf_counter() - started)
    # What is left lives until exit: exempt it from the garbage collector, whose passes over
    # torch's, Lightning's and MLflow's objects are most of Python's exit (docs/results.md).
    gc.freeze()
