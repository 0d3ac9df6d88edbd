"""Debian's headless Chromium driven over the Chrome DevTools Protocol, through a pipe.

`--remote-debugging-pipe`: Chromium reads commands on its fd 3 and writes answers and events on
fd 4, each a JSON message ended by a NUL byte. No driver to download (no chromedriver, no
Playwright browser), no websocket library: only the browser that `.ci/debian-packages` installs.
Input goes in as real input events (`Input.dispatchMouseEvent`), as a user's mouse makes them.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from browser import CHROMIUM, FLAGS


def above_4(fd: int) -> int:
    """`fd` moved above 4, so that bash's `3<&fd` and `4>&fd` never close what they duplicate."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Page:
    """One tab of a fresh headless Chromium; use as a context manager."""

    def __init__(self, folder: Path, width: int = 1400, height: int = 900) -> None:
        assert CHROMIUM, "chromium is not installed"
        profile = tempfile.mkdtemp(prefix="chromium-", dir=folder)
        commands_r, self.commands = map(above_4, os.pipe())
        self.answers, answers_w = map(above_4, os.pipe())
        # bash puts the pipes on fds 3 and 4, where Chromium looks for them
        script = f'exec 3<&{commands_r} 4>&{answers_w} {commands_r}<&- {answers_w}>&-; exec "$@"'
        self.process = subprocess.Popen(
            ["bash", "-c", script, "chromium", CHROMIUM, *FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            pass_fds=(commands_r, answers_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(commands_r)
        os.close(answers_w)
        self.buffer, self.next_id, self.session = b"", 0, None
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        self.send("Page.enable")

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        os.close(self.commands)
        os.close(self.answers)

    def send(self, method: str, timeout: float = 30, **params: Any) -> dict:
        """One command; its result (events that come meanwhile are dropped)."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.answers], [], [], left)[0]:
                    raise TimeoutError(f"chromium did not answer {method} in {timeout} s")
                chunk = os.read(self.answers, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited (status {self.process.poll()})")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(f"Boolean({condition})"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never had {condition} within {timeout} s")
            time.sleep(0.05)

    def drag(self, points: list[tuple[float, float]]) -> None:
        """One stroke of the left mouse button through `points` (page pixels)."""
        mouse = {"button": "left", "clickCount": 1}
        x, y = points[0]
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.send("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, buttons=1, **mouse)
        for x, y in points[1:]:
            self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, buttons=1,
                      button="left")  # fmt: skip
        self.send("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, buttons=0, **mouse)

    def click(self, selector: str) -> None:
        box = self.js(
            f"(b => [b.x + b.width / 2, b.y + b.height / 2])"
            f"(document.querySelector({json.dumps(selector)}).getBoundingClientRect())"
        )
        self.drag([tuple(box)])

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.write_bytes(base64.b64decode(data["data"]))

    def choose_file(self, selector: str, path: Path) -> None:
        """What a user choosing `path` in the file dialog of `<input type=file>` does."""
        document = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=document, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", files=[str(path)], nodeId=node)
