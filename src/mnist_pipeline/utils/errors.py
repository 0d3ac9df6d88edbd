"""Walking an exception's chain: libraries wrap what really happened (Lightning answers Ctrl-C
with `sys.exit(1)`, Hydra's compose wraps it, MLflow wraps SQLAlchemy's error, which wraps
sqlite3's), and what to say depends on what is inside."""

from __future__ import annotations

import signal
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler ending the job) as an interrupt: the stage unwinds, its MLflow
    run is marked KILLED, and Lightning handles it as it handles Ctrl-C, at once, instead of
    finishing the epoch and exiting with status 0 (its own SIGTERM handling)."""


def chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, then every exception in its cause/context chain, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


def interruption(error: BaseException) -> int | None:
    """130 if Ctrl-C, 143 if SIGTERM, is anywhere in `error`'s chain, else None."""
    for e in chain(error):
        if isinstance(e, Terminated) or type(e).__name__ == "SIGTERMException":  # Lightning's
            return 128 + signal.SIGTERM
        if isinstance(e, KeyboardInterrupt):
            return 128 + signal.SIGINT
    return None
