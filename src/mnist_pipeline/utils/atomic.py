"""Atomic file output: a reader sees the old file or the whole new one, never half of either."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it vanishes.

    The temporary file lives in the same directory so the final `os.replace` is a rename on one
    filesystem, which POSIX makes atomic. The file's data is flushed before the rename and the
    directory's entry after it, so a power loss leaves the old file or the whole new one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    # Created like any new file (mode 0666 less the process umask), and exclusively. Not
    # tempfile.mkstemp: its 0600 would need the umask to fix, and reading the umask means
    # setting it, a race with every other thread creating files.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        durable_replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def durable_replace(source: Path, target: Path) -> None:
    """Rename `source` over `target` so a power loss leaves one or the other whole: its bytes are
    on disk before the rename, and the rename is on disk (the folder synced) before we go on."""
    with open(source, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(source, target)
    fsync_directory(target.parent)


def fsync_directory(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX keeps directory entries in the directory's data)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
