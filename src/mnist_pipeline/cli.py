"""What every stage entry point shares: private and quiet defaults, logging levels, and known
failures turned into one message.

    python -m mnist_pipeline.<stage> [-q | -v]
    LOG_LEVEL=WARNING|INFO|DEBUG dvc repro       # the same, for every stage DVC runs

Default: the project's own lines (INFO) and everyone's warnings; libraries' INFO lines (Lightning's
tips, "GPU available: ...") and deprecation warnings are left out. `-v` (DEBUG) adds them and the
project's debug lines; `-q` (WARNING) keeps only warnings and errors, and no progress output.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from mnist_pipeline.redact import RedactingFilter, redact

LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING}
PROJECT_LOGGERS = ("mnist_pipeline", "__main__")
FORMAT = "%(levelname)s %(name)s: %(message)s"


def keep_private() -> None:
    """No usage telemetry from MLflow unless the user asks for it (docs: Privacy).

    MLflow reads MLFLOW_DISABLE_TELEMETRY when `import mlflow` builds its telemetry client. Every
    stage imports this module before any of its own, and so before mlflow, except where a stage
    imports mlflow itself first (evaluate): then the client that import made, not yet started
    (it starts with the first event), is dropped by building it again under the new setting.
    """
    if "MLFLOW_DISABLE_TELEMETRY" in os.environ:  # the user's choice
        return
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if "mlflow.telemetry" in sys.modules:
        from mlflow.telemetry import set_telemetry_client

        set_telemetry_client()


keep_private()


def log_level(argv: list[str]) -> int:
    """The level asked for by -v/--verbose or -q/--quiet, else $LOG_LEVEL, else INFO.

    The flags are taken out of `argv`, so a stage reading its own arguments (train's `--params`)
    never sees them.
    """
    flags = {"-v": logging.DEBUG, "--verbose": logging.DEBUG, "-q": logging.WARNING}
    flags["--quiet"] = logging.WARNING
    given = [arg for arg in argv[1:] if arg in flags]
    argv[1:] = [arg for arg in argv[1:] if arg not in flags]
    if given:
        return flags[given[-1]]
    name = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
    if name not in LEVELS:
        raise SystemExit(f"error: LOG_LEVEL={name!r}: use one of {', '.join(LEVELS)}")
    return LEVELS[name]


class LibraryFilter(logging.Filter):
    """Below `threshold`, only the project's own records pass: libraries' INFO lines, such as
    Lightning's "💡 Tip: ..." and "GPU available: False, used: False", are left out."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".")[0] in PROJECT_LOGGERS
        return own or record.levelno >= self.threshold


def setup_logging(level: int) -> None:
    """One stderr handler, at `level` for the project's loggers; libraries' lines (Lightning's,
    MLflow's) from INFO up under -v, from WARNING up otherwise."""
    logging.basicConfig(level=max(level, logging.INFO), format=FORMAT, force=True)
    handler = logging.getLogger().handlers[0]
    handler.addFilter(LibraryFilter(logging.INFO if level <= logging.DEBUG else logging.WARNING))
    handler.addFilter(RedactingFilter())  # no token from a tracking URI in any line
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)
    # Lightning gives its loggers their own handler when imported before this: route them here.
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    if level <= logging.DEBUG:
        return
    # MLflow keeps a handler of its own, set up when it is imported (before this, or later), and
    # a progress bar for artifact transfers: the same rule, unless the user set them.
    if "MLFLOW_LOGGING_LEVEL" not in os.environ:
        os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not sys.warnoptions:  # unless the user set -W or PYTHONWARNINGS
        # Libraries' deprecation notices (e.g. torch's "LeafSpec is deprecated" through
        # Lightning) are for their developers, not for someone training a model.
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler ending the job) as an interrupt: the stage unwinds, its MLflow
    run is marked KILLED, and Lightning handles it as it handles Ctrl-C, at once, instead of
    finishing the epoch and exiting with status 0 (its own SIGTERM handling)."""


def raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


def interruption(error: BaseException) -> int | None:
    """130 if Ctrl-C, 143 if SIGTERM, is anywhere in `error`'s cause/context chain, else None.

    Libraries wrap the interrupt: Lightning answers it with `sys.exit(1)`, Hydra's compose with a
    `ConfigCompositionException`; the KeyboardInterrupt stays in the chain.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, Terminated) or type(e).__name__ == "SIGTERMException":  # Lightning's
            return 128 + signal.SIGTERM
        if isinstance(e, KeyboardInterrupt):
            return 128 + signal.SIGINT
        todo += [e.__cause__, e.__context__]
    return None


class WrongCheckout(RuntimeError):
    """The code Python imported is not the code of the workspace the command runs in."""


PACKAGE = Path(__file__).resolve().parent


def check_workspace_code(cwd: Path | None = None) -> None:
    """Refuse to run another checkout's code from inside a checkout.

    A venv's editable install points at one checkout's src/. DVC runs a queued or `--temp`
    experiment in a copy of the workspace (and a second clone may share the venv), and hashes that
    copy's code into dvc.lock: the stage must run that code, which dvc.yaml's `PYTHONPATH=src`
    makes Python import first. Outside a checkout (an installed package) there is nothing to check.
    """
    root = cwd or Path.cwd()
    here = root / "src" / "mnist_pipeline"
    if not (root / "dvc.yaml").is_file() or not (here / "__init__.py").is_file():
        return
    if here.resolve() != PACKAGE:
        raise WrongCheckout(
            f"this command runs in {root}, whose code is {here}, but Python imported "
            f"mnist_pipeline from {PACKAGE} (another checkout, where the venv's editable install "
            "points), so what ran would not be what DVC records. Run it as dvc.yaml does, "
            "`PYTHONPATH=src python -m mnist_pipeline.<command>`, or `pip install -e .` here."
        )


@contextlib.contextmanager
def reported(stage: str, expected: tuple[type[BaseException], ...], again: str) -> Iterator[None]:
    """An expected failure prints one clear paragraph and exits 1, an interrupt one line and 130
    (Ctrl-C) or 143 (SIGTERM); no traceback, no credential. `again` says how to go on after an
    interrupt. Stages, ad-hoc runs and sweeps all end this way.

    The heavy commands (train, evaluate) import torch, Lightning and MLflow with the garbage
    collector off: imports make next to no garbage, and its passes over their growing heap are a
    fifth of train's start (docs/results.md). It is back on from here, with what the imports
    made frozen (it lives until exit, so no pass need scan it again)."""
    gc.freeze()
    gc.enable()
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # unless someone handles it already
        with contextlib.suppress(ValueError):  # only the main thread may; a launcher's job may not
            signal.signal(signal.SIGTERM, raise_terminated)
    try:
        check_workspace_code()
        yield
    except BaseException as e:
        code = interruption(e)
        if code is not None:
            how = "Ctrl-C" if code == 128 + signal.SIGINT else "SIGTERM"
            print(
                f"error: {stage} interrupted ({how}); nothing half-written was kept. {again}",
                file=sys.stderr,
            )
            sys.exit(code)
        if not isinstance(e, (*expected, WrongCheckout)):
            raise
        print(f"error: {redact(' '.join(str(e).split()))}", file=sys.stderr)
        sys.exit(1)


def run_stage(main: Callable[[], None], *expected: type[BaseException]) -> None:
    """Run a stage with the project's logging, its errors `reported`."""
    level = log_level(sys.argv)
    setup_logging(level)
    log = logging.getLogger(__name__)
    stage = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    log.debug("%s: starting in %s (python %s)", stage, os.getcwd(), sys.version.split()[0])
    started = time.perf_counter()
    again = "Run `dvc repro` again to go on (a training resumes from its last epoch)."
    with contextlib.ExitStack() as quiet, reported(stage, expected, again):
        if level >= logging.WARNING:  # no progress output either: prints, progress bars
            quiet.enter_context(
                contextlib.redirect_stdout(quiet.enter_context(open(os.devnull, "w")))
            )
        main()
    log.debug("%s: done in %.1f s", stage, time.perf_counter() - started)
    # What is left lives until exit: exempt it from the garbage collector, whose passes over
    # torch's, Lightning's and MLflow's objects are most of Python's exit (docs/results.md).
    gc.freeze()
