"""Latency of one prediction on the demo page (`make demo`), as its user sees it.

Starts the demo on a free port of 127.0.0.1, opens it in Debian's headless Chromium (driven as
tests/test_demo_page.py drives it), draws digits with real mouse events, and after each digit
reads the page's own figure for its last answer: from sending the canvas to the bars, 28x28 input,
filters and feature maps drawn (PNG encoding, HTTP, preprocessing, the network with its hooks,
JSON, drawing). Prints the median and range, and the part spent in the model. Optionally saves a
screenshot of the page with the last digit.

    python benchmarks/demo_latency.py                         # the model `make demo` serves
    python benchmarks/demo_latency.py --model models/model.pt --rounds 20 --screenshot docs/demo.png
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from cdp import Page  # noqa: E402  (tests/ is not a package)

# Strokes in pad pixels (280x280): a 1, a 0, a 4 and a 7.
DIGITS = {
    "1": [[(150 + 12 * (1 - t), 45 + 190 * t) for t in np.linspace(0, 1, 15)]],
    "0": [[(140 + 55 * np.sin(a), 140 - 90 * np.cos(a)) for a in np.linspace(0, 6.5, 30)]],
    "4": [[(150, 40), (80, 170), (200, 170)], [(165, 90), (160, 250)]],
    "7": [[(75, 55), (205, 55), (180, 110), (140, 245)]],
}


def line(points: list[tuple[float, float]], step: float = 12.0) -> list[tuple[float, float]]:
    """Points every `step` pixels along a polyline, as a mouse sends them."""
    out = [points[0]]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        n = max(1, int(np.hypot(x1 - x0, y1 - y0) // step))
        out += [(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n) for k in range(1, n + 1)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model file (default: what `make demo` serves)")
    parser.add_argument("--rounds", type=int, default=12, help="digits drawn (default 12)")
    parser.add_argument("--screenshot", type=Path, help="save the page, last digit drawn, here")
    args = parser.parse_args()
    command = [sys.executable, "-m", "mnist_pipeline.demo", "--port", "0"]
    server = subprocess.Popen(
        command + (["--model", args.model] if args.model else []),
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = server.stdout.readline().strip() + "/"
        with tempfile.TemporaryDirectory() as folder, Page(Path(folder)) as page:
            page.goto(url)
            page.wait_for("document.body.dataset.ready === 'true'", timeout=120)
            print(page.js("document.getElementById('about').textContent"))
            page_ms, model_ms, digits = [], [], []
            names = list(DIGITS)
            for n in range(args.rounds):
                name = names[(n + 1) % len(names)]
                page.click("#clear")
                x0, y0 = page.js("(b => [b.x, b.y])(pad.getBoundingClientRect())")
                before = int(page.js("document.body.dataset.predictions"))
                for stroke in DIGITS[name]:
                    page.drag([(x0 + x, y0 + y) for x, y in line(stroke)])
                page.wait_for(
                    f"document.body.dataset.predictions > {before} && "
                    "document.body.dataset.busy === 'false'"
                )
                page_ms.append(float(page.js("document.body.dataset.latencyMs")))
                model_ms.append(float(page.js("latency.textContent.match(/\\(([\\d.]+) ms/)[1]")))
                digits.append(f"{name}→{page.js('digit.textContent')}")
            if args.screenshot:
                page.screenshot(args.screenshot)
    finally:
        server.terminate()
        server.wait(timeout=30)
    skip = 2 if len(page_ms) > 4 else 0  # the first answers warm up the browser and the model
    print("drawn→shown:", " ".join(digits))
    for label, values in (("page", page_ms[skip:]), ("of it, the model", model_ms[skip:])):
        print(
            f"{label}: median {statistics.median(values):.0f} ms, "
            f"min {min(values):.0f}, max {max(values):.0f} (n={len(values)})"
        )


if __name__ == "__main__":
    main()
