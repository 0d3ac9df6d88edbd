"""Predict the digit in image files: photos, scans, drawings, in any common format.

    python -m mnist_pipeline.predict FILE_OR_FOLDER... [--model URI|PATH] [--json] [--top K]
    python -m mnist_pipeline.predict --label 7 FILE_OR_FOLDER...    # add them to data/yours/7/

Each answer is the digit and its calibrated probability, or "not sure" with the two likeliest
digits when the model's rule doubts it (`model/doubt.py`). Each file goes through
`serving/images.py` (ink found whichever its polarity, cropped, scaled to
20 px and centred by mass on 28x28, as MNIST was made), then through the model `serving/loader.py`
opens: by default the registry's `champion`, else `models/model.pt`. A bad file gets one line on
stderr and the others are still predicted; the exit status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO, TypeVar

import numpy as np

from mnist_pipeline.model import model_file
from mnist_pipeline.runtime.command import run_stage
from mnist_pipeline.serving import collect, loader
from mnist_pipeline.serving.images import ImageError, load, read

log = logging.getLogger(__name__)
T = TypeVar("T")
BATCH = 256
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline.predict",
        description="Predict the handwritten digit in image files (PNG, JPEG, BMP, GIF, WebP, "
        "TIFF) and folders of them.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="image files or folders")
    parser.add_argument(
        "--model",
        help=f"a registry URI (default {loader.CHAMPION}, else {loader.FALLBACK}), an MLflow "
        "model folder, or a model file written by train",
    )
    parser.add_argument(
        "--json", dest="as_json", action="store_true", help="print a JSON list, one per file"
    )
    parser.add_argument("--top", type=top_count, default=3, help="how many likeliest digits (1-10)")
    parser.add_argument(
        "--label", type=int, choices=range(10), metavar="DIGIT",
        help="predict nothing: add the files to your own digits, data/yours/DIGIT/ (DVC data, "
        "private until you `dvc push`), for the next `dvc repro` to train on",
    )  # fmt: skip
    return parser


def top_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10:
        raise argparse.ArgumentTypeError(f"{text}: give a number from 1 to 10")
    return int(text)


def main(
    paths: list[Path],
    model: str | None,
    as_json: bool,
    top: int,
    label: int | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """The answers go to `out` (the real stdout) even with -q, which silences only logs and
    progress."""
    if label is not None:
        collect_all(paths, label, out)
        return
    served = loader.load(model)
    log.debug("predicting with %s", served.source)
    results: list[dict] = []
    pixels, slots = [], []
    for path, problem in progress(expand(paths)):
        if problem is None:
            image, problem = attempt(path, load)
            if problem is None:
                pixels.append(image)
                slots.append(len(results))
        results.append({"file": str(path)} | ({} if problem is None else {"error": problem}))
    if pixels:
        probabilities, unsure = served.judge(np.stack(pixels))
        for slot, p, doubt in zip(slots, probabilities, unsure, strict=True):
            results[slot] = answer(results[slot]["file"], p, bool(doubt), top)
    for result in results:
        if "error" in result:
            print(f"error: {result['file']}: {result['error']}", file=sys.stderr)
    if as_json:
        json.dump(results, out, indent=1)
        out.write("\n")
    else:
        out.writelines(line(r) + "\n" for r in results if "error" not in r)
    if any("error" in r for r in results):
        failed = sum("error" in r for r in results)
        raise SystemExit(f"error: {failed} of {len(results)} files could not be predicted")


def collect_all(paths: list[Path], label: int, out: TextIO) -> None:
    """Each file into data/yours/<label>/, refused as predict would refuse it."""
    root, failed, entries = loader.project(), 0, expand(paths)
    for path, problem in entries:
        if problem is None:
            saved, problem = attempt(path, lambda data, name: collect.save(data, name, label, root))
            if problem is None:
                out.write(f"{path}: saved as a {label}: {loader.shown(saved.picture)}\n")
                continue
        print(f"error: {path}: {problem}", file=sys.stderr)
        failed += 1
    if failed:
        raise SystemExit(f"error: {failed} of {len(entries)} files could not be added")


def attempt(path: Path, work: Callable[[bytes, str], T]) -> tuple[T | None, str | None]:
    """`work` done on the file's bytes, or why the file cannot be used (predict's one line, the
    same whether it is predicted or added to your digits)."""
    try:
        return work(read(path), str(path)), None
    except ImageError as e:
        return None, str(e).removeprefix(f"{path}: ")
    except OSError as e:
        return None, f"unreadable ({e.strerror or e})"


def expand(paths: list[Path]) -> list[tuple[Path, str | None]]:
    """(file, None) for each file to read, (path, problem) for each path that cannot be read, in
    the order given. A file named directly is read whatever its name; in a folder, only files
    with an image extension are taken."""
    entries: list[tuple[Path, str | None]] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()
            )
            entries += [(p, None) for p in found]
            if not found:
                entries.append((path, f"a folder with no image files ({', '.join(EXTENSIONS)})"))
        elif path.is_file():
            entries.append((path, None))
        else:
            entries.append((path, "no such file" if not path.exists() else "not a file"))
    return entries


def answer(file: str, probabilities: np.ndarray, not_sure: bool, top: int) -> dict:
    ranked = np.argsort(-probabilities, kind="stable")[:top]
    return {
        "file": file,
        "digit": int(ranked[0]),
        "probability": round(float(probabilities[ranked[0]]), 4),
        "not_sure": not_sure,
        "top": [
            {"digit": int(d), "probability": round(float(probabilities[d]), 4)} for d in ranked
        ],
    }


def line(result: dict) -> str:
    """`a.png: 4 (0.981)  next: 9 0.012`; a doubtful answer says so first, then the two
    likeliest digits: `x.png: not sure  likeliest: 4 0.512, 9 0.301`."""
    ranked = [f"{t['digit']} {t['probability']:.3f}" for t in result["top"]]
    if result["not_sure"]:
        return f"{result['file']}: not sure  likeliest: {', '.join(ranked[:2])}"
    best = f"{result['file']}: {result['digit']} ({result['probability']:.3f})"
    return best + (f"  next: {', '.join(ranked[1:])}" if len(ranked) > 1 else "")


def progress(entries: list[tuple[Path, str | None]]) -> Iterable[tuple[Path, str | None]]:
    """A progress bar over many files, on a terminal's stderr only (not in logs, not with -q)."""
    if len(entries) < 20 or not sys.stderr.isatty() or not log.isEnabledFor(logging.INFO):
        return entries
    from tqdm import tqdm

    return tqdm(entries, unit="file", file=sys.stderr, leave=False)


if __name__ == "__main__":
    run_stage(main, loader.ModelError, model_file.CheckpointError, parser=arguments())
