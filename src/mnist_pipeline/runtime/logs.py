"""Logging for a command: the project's own lines, everyone's warnings, and libraries' chatter
left out.

    python -m mnist_pipeline.<command> [-q | -v]
    LOG_LEVEL=WARNING|INFO|DEBUG dvc repro       # the same, for every stage DVC runs

Default: the project's own lines (INFO) and everyone's warnings; libraries' INFO lines (Lightning's
tips, "GPU available: ...") and deprecation warnings are left out. `-v` (DEBUG) adds them and the
project's debug lines; `-q` (WARNING) keeps only warnings and errors, and no progress output.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from mnist_pipeline.utils.redact import RedactingFilter

LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING}
PROJECT_LOGGERS = ("mnist_pipeline", "__main__")
FORMAT = "%(levelname)s %(name)s: %(message)s"


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """Every command's -v/--verbose and -q/--quiet (the last one given wins)."""
    group = parser.add_argument_group("logging (default: $LOG_LEVEL, else INFO)")
    for flags, level, text in (
        (("-v", "--verbose"), logging.DEBUG, "the project's debug lines and libraries' INFO lines"),
        (("-q", "--quiet"), logging.WARNING, "warnings and errors only, no progress output"),
    ):
        group.add_argument(*flags, dest="verbosity", action="store_const", const=level, help=text)


def log_level(verbosity: int | None) -> int:
    """The level asked for by -v or -q, else $LOG_LEVEL, else INFO."""
    if verbosity is not None:
        return verbosity
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
