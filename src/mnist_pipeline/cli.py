"""What every stage entry point shares: logging, and known failures turned into one message."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


def run_stage(main: Callable[[], None], *expected: type[BaseException]) -> None:
    """Run a stage; an expected failure prints one clear paragraph and exits 1, no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except expected as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
