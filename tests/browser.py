"""A real headless Chromium, for the tests that check a page as a user's browser shows it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="needs chromium, which is not installed (apt-get install -y chromium; .ci/run does)",
)
# A fresh profile each time; no GPU, no sandbox (root in a container), none of Chromium's own
# traffic (updates, sync, QUIC probes), and no host name resolves but 127.0.0.1: no network
# beyond this machine (which has none anyway).
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]  # fmt: skip


class BrowserError(RuntimeError):
    """Chromium did not render the page at all (as opposed to rendering the wrong thing)."""


def render(url: str, folder: Path, screenshot: str | None = None, wait_ms: int = 10_000) -> str:
    """The DOM of `url` once its scripts have run for `wait_ms` of (virtual) time; with
    `screenshot`, a 1400x900 PNG of the page is saved under that name in `folder` too."""
    assert CHROMIUM, "chromium is not installed"
    profile = tempfile.mkdtemp(prefix="chromium-", dir=folder)
    args = [
        CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={wait_ms}",
        "--window-size=1400,900",
    ]  # fmt: skip
    if screenshot:
        args.append(f"--screenshot={folder / screenshot}")
    result = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not result.stdout or "Page load failed" in result.stderr:
        raise BrowserError(f"chromium could not render {url}:\n{result.stderr[-3000:]}")
    return result.stdout
