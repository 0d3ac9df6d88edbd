"""Accuracy of `python -m mnist_pipeline.predict` on real handwriting that is not MNIST.

Two test sets are rendered, deterministically, from the data files in benchmarks/handwriting/
(sources, licence and method in its README) into benchmarks/handwriting/images/ (git-ignored):

  scans/  UCI Semeion: 1593 digits by about 80 people, scanned and stored as 16x16 bits, drawn as
          dark ink on white paper: upscaled 3-10x with smoothing, placed anywhere on a page 1.5-3x
          larger, paper grain, PNG or JPEG.
  drawn/  UCI pen-based digits: 1050 pen trajectories by 14 people, replayed the way a web page's
          canvas draws a mouse path (straight segments between samples, round caps and joins, a
          12-22 px brush on 280x280, anti-aliased), on white, black or transparent; PNG.

Then each set goes through the CLI (`--json`) with each model given, and the accuracy per set is
printed, with the commonest confusions, the share answered without "not sure" and the accuracy of
those answers. Two more sets check the "not sure" rule against its targets:

  nondigits/  shapes, noise and letters (`data/nondigits.py`) drawn with another seed than the
          training's and, where it is installed, another font (DejaVu Sans): at least 90% flagged.
  MNIST test  (data/processed, `make repro`): at most 1% flagged.

Nothing here is used for training, nor to choose the rule.

    python benchmarks/handwriting.py                                   # the default model
    python benchmarks/handwriting.py --model models/model.pt --model /tmp/cnn.pt
    python benchmarks/handwriting.py --rest 5000    # and the same files through `make serve`
"""

from __future__ import annotations

import argparse
import base64
import collections
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mnist_pipeline.data import nondigits

HERE = Path(__file__).with_name("handwriting")
VERSION = "2"  # bump when the rendering changes: the images are made again
NONDIGITS, NONDIGIT_SEED = 850, 2026  # the training draws its own with the run's seed
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def semeion() -> list[tuple[np.ndarray, int]]:
    """(16x16 bits, label) per line of semeion.data: 256 pixels, then the label one-hot."""
    digits = []
    with gzip.open(HERE / "semeion.data.gz", "rt") as lines:
        rows = list(lines)
    for line in rows:
        values = [float(v) for v in line.split()]
        bits = np.array(values[:256]).reshape(16, 16)
        digits.append((bits, int(np.argmax(values[256:266]))))
    return digits


def pendigits(name: str = "pendigits-orig-subset.tes.gz") -> list[tuple[list[np.ndarray], int]]:
    """(strokes, label) per UNIPEN `.SEGMENT`: each stroke the (x, y) points between `.PEN_DOWN`
    and `.PEN_UP`, tablet y pointing up."""
    with gzip.open(HERE / name, "rt") as file:
        text = file.read()
    digits = []
    for segment in re.split(r"^\.SEGMENT DIGIT", text, flags=re.M)[1:]:
        label = int(re.search(r'"(\d)"', segment).group(1))
        strokes = [
            np.array([[float(v) for v in row.split()] for row in block.strip().splitlines()])
            for block in re.findall(r"\.PEN_DOWN\n(.*?)\.PEN_UP", segment, flags=re.S)
        ]
        digits.append(([s for s in strokes if len(s)], label))
    return digits


def scan(bits: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A 16x16 binary digit as a scanner would see it on paper: smooth strokes, any size, anywhere
    on the page, grainy paper, grey ink."""
    scale = int(rng.integers(3, 11))
    size = 16 * scale
    glyph = Image.fromarray((bits * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    glyph = glyph.filter(ImageFilter.GaussianBlur(scale * 0.4))
    ink = np.clip((np.asarray(glyph, dtype=np.float32) / 255.0 - 0.3) / 0.4, 0.0, 1.0)
    height, width = (int(size * rng.uniform(1.5, 3.0)) for _ in range(2))
    top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    coverage = np.zeros((height, width), dtype=np.float32)
    coverage[top : top + size, left : left + size] = ink
    paper, dark = rng.uniform(200, 250), rng.uniform(10, 80)
    page = paper + (dark - paper) * coverage + rng.normal(0, rng.uniform(2, 8), coverage.shape)
    return Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))


def drawing(strokes: list[np.ndarray], rng: np.random.Generator, kind: int) -> Image.Image:
    """Pen trajectories drawn as a canvas draws a mouse path: 280x280, round brush, anti-aliased
    (drawn 4x larger, then averaged down), on white, black or transparent (kind 0, 1, 2)."""
    canvas, sup = 280, 4
    brush = float(rng.uniform(12, 22))
    points = np.concatenate(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = rng.uniform(0.45, 0.8) * canvas
    scale = extent / max(float((high - low).max()), 1.0)
    size = (high - low) * scale
    room = [canvas - brush - s for s in size]  # where the digit's corner may go
    offset = [rng.uniform(brush, end) if end > brush else brush for end in room]
    mask = Image.new("L", (canvas * sup, canvas * sup), 0)
    pen = ImageDraw.Draw(mask)
    radius = brush * sup / 2
    for stroke in strokes:
        xy = (stroke - low) * scale
        xy[:, 1] = size[1] - xy[:, 1]  # tablet y points up, a canvas's down
        xy = [((x + offset[0]) * sup, (y + offset[1]) * sup) for x, y in xy]
        if len(xy) > 1:
            pen.line(xy, fill=255, width=round(brush * sup))
        for x, y in xy:  # round caps and joins
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    alpha = mask.resize((canvas, canvas), Image.BOX)
    if kind == 2:  # transparent canvas, black strokes: what `canvas.toDataURL()` gives by default
        return Image.merge("RGBA", (*(Image.new("L", alpha.size, 0),) * 3, alpha))
    ink = np.asarray(alpha, dtype=np.float32) / 255.0
    paper, stroke = (255.0, 0.0) if kind == 0 else (0.0, 255.0)
    return Image.fromarray((paper + (stroke - paper) * ink).round().astype(np.uint8))


def render(out: Path) -> None:
    """Both sets into `out`, named `<label>-<source>-<index>.<ext>`, unless already there."""
    stamp = out / "VERSION"
    if stamp.is_file() and stamp.read_text() == VERSION:
        return
    shutil.rmtree(out, ignore_errors=True)
    for name in ("scans", "drawn", "nondigits"):
        (out / name).mkdir(parents=True)
    rng = np.random.default_rng(12)
    for i, (bits, label) in enumerate(semeion()):
        image = scan(bits, rng)
        name = out / f"scans/{label}-semeion-{i:04d}"
        if i % 2:
            image.save(name.with_suffix(".jpg"), quality=int(rng.integers(70, 95)))
        else:
            image.save(name.with_suffix(".png"))
    for i, (strokes, label) in enumerate(pendigits()):
        drawing(strokes, rng, i % 3).save(out / f"drawn/{label}-pendigits-{i:04d}.png")
    font = str(FONT) if FONT.is_file() else None
    for i, (kind, image) in enumerate(nondigits.generate(NONDIGITS, NONDIGIT_SEED, font)):
        image.save(out / f"nondigits/x-{kind}-{i:04d}.png")
    stamp.write_text(VERSION)


def evaluate(folder: Path, model: str | None) -> dict:
    """Run the CLI on `folder`; accuracy against the labels in the file names, and confusions."""
    command = [sys.executable, "-m", "mnist_pipeline.predict", str(folder), "--json", "-q"]
    command += ["--model", model] if model else []
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"predict failed on {folder}:\n{done.stderr[-2000:]}")
    results = json.loads(done.stdout)
    name = Path(results[0]["file"]).name[0]
    truth = [int(n) if (n := Path(r["file"]).name[0]).isdigit() else -1 for r in results]
    guess = [r.get("digit", -1) for r in results]
    sure = [not r.get("not_sure", True) for r in results]
    right = [t == g for t, g in zip(truth, guess, strict=True)]
    confusions = collections.Counter((t, g) for t, g in zip(truth, guess, strict=True) if t != g)
    answered = sum(sure)
    return {
        "digits": dict(zip((r["file"] for r in results), guess, strict=True)),
        "images": len(results),
        "accuracy": sum(right) / len(results),
        "answered": answered / len(results),
        "accuracy_answered": sum(r and s for r, s in zip(right, sure, strict=True))
        / max(1, answered),
        "failed": sum("error" in r for r in results),
        "confusions": [f"{t}->{g}: {n}" for (t, g), n in confusions.most_common(6)],
        "digits_set": name.isdigit(),
        "sure": sure,
        "right": right,
        "top": [r.get("probability", 0.0) for r in results],
    }


def mnist_test(model: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Each MNIST test digit's top probability and "not sure" flag, if data/processed is there."""
    test_file = Path("data/processed/test.npz")
    if not test_file.is_file():
        return None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mnist_pipeline.serving import loader

    with np.load(test_file) as split:
        probabilities, unsure = loader.load(model).judge(split["images"].astype(np.float32))
    return probabilities.max(axis=1), unsure


def price_of_97(result: dict, test: tuple[np.ndarray, np.ndarray]) -> str:
    """What reaching 97% on a set would cost, measured, never used to choose the rule: the
    lowest probability below which answers are flagged too, and the MNIST test share flagged."""
    sure = np.array(result["sure"])
    right, top = np.array(result["right"]), np.array(result["top"])
    for threshold in np.unique(top):
        answered = sure & (top >= threshold)
        if answered.any() and right[answered].mean() >= 0.97:
            test_top, test_unsure = test
            flagged = (test_unsure | (test_top < threshold)).mean()
            return (
                f"97% would need answers below {threshold:.3f} flagged too: "
                f"{answered.mean():.1%} answered, MNIST test {flagged:.1%} flagged"
            )
    return "97% is out of reach at any threshold"


def served(folder: Path, port: int) -> dict[str, int]:
    """Each file's digit from `make serve` on `port` (64 files a request)."""
    files = sorted(str(p) for p in folder.iterdir())
    digits = {}
    for start in range(0, len(files), 64):
        chunk = files[start : start + 64]
        cells = [[base64.b64encode(Path(f).read_bytes()).decode()] for f in chunk]
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": cells}}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            answers = json.loads(response.read())["predictions"]
        digits |= {f: a["digit"] for f, a in zip(chunk, answers, strict=True)}
    return digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="as predict's --model; repeatable")
    parser.add_argument("--out", type=Path, default=HERE / "images")
    parser.add_argument("--sets", default="scans,drawn,nondigits")
    parser.add_argument("--rest", type=int, metavar="PORT", help="compare with `make serve`")
    args = parser.parse_args()
    render(args.out)
    for model in args.model or [None]:
        test = mnist_test(model)
        for name in args.sets.split(","):
            result = evaluate(args.out / name, model)
            if not result["digits_set"]:
                flagged = 1 - result["answered"]
                print(
                    f"{model or 'default model'}  {name}: {flagged:.1%} of {result['images']} "
                    f"flagged not sure (target at least 90%)",
                    flush=True,
                )
                continue
            print(
                f"{model or 'default model'}  {name}: {result['accuracy']:.2%} of "
                f"{result['images']} ({result['failed']} failed); answered "
                f"{result['answered']:.1%}, of those right {result['accuracy_answered']:.2%} "
                f"(target at least 97%)  confusions (true->predicted): "
                + ", ".join(result["confusions"]),
                flush=True,
            )
            if test is not None:
                print(f"  {price_of_97(result, test)}")
            if args.rest:
                rest = served(args.out / name, args.rest)
                same = sum(rest[f] == d for f, d in result["digits"].items())
                print(f"  make serve on port {args.rest}: the same digit for {same} of {len(rest)}")
        if test is not None:
            print(
                f"{model or 'default model'}  MNIST test: {test[1].mean():.2%} flagged not sure "
                "(target at most 1%)"
            )


if __name__ == "__main__":
    main()
