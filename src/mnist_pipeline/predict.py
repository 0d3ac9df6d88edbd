"""Predict the digit in image files: photos, scans, drawings, in any common format.

    python -m mnist_pipeline.predict FILE_OR_FOLDER... [--model URI|PATH] [--json] [--top K]

Each file goes through `mnist_pipeline.images` (ink found whichever its polarity, cropped, scaled
to 20 px and centred by mass on 28x28, as MNIST was made), then through the model: by default the
registry's `champion`, else `models/model.pt`. A bad file gets one line on stderr and the others
are still predicted; the exit status is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
import yaml

from mnist_pipeline.images import ImageError, load, one_line
from mnist_pipeline.model import model_file
from mnist_pipeline.runtime.command import run_stage

log = logging.getLogger(__name__)
CHAMPION = "models:/mnist-classifier@champion"
FALLBACK = Path("models/model.pt")
BATCH = 256
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

Logits = Callable[[np.ndarray], np.ndarray]  # float32 (N, 28, 28) pixels 0-255 → (N, 10) logits


class ModelError(RuntimeError):
    """No model to predict with; the message names what was tried and what to do."""


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_pipeline.predict",
        description="Predict the handwritten digit in image files (PNG, JPEG, BMP, GIF, WebP, "
        "TIFF) and folders of them.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="image files or folders")
    parser.add_argument(
        "--model",
        help=f"a registry URI (default {CHAMPION}, else {FALLBACK}), an MLflow model folder, "
        "or a model file written by train",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list, one per file")
    parser.add_argument("--top", type=int, default=3, help="how many likeliest digits to show")
    args = parser.parse_args(argv)
    if not 1 <= args.top <= 10:
        parser.error(f"--top {args.top}: give a number from 1 to 10")
    return args


def main(out: TextIO) -> None:
    args = arguments(sys.argv[1:])
    predict, source = load_model(args.model)
    log.debug("predicting with %s", source)
    results: list[dict] = []
    pixels, slots = [], []
    for path, problem in progress(expand(args.paths)):
        if problem is None:
            try:
                pixels.append(load(path.read_bytes(), str(path)))
                slots.append(len(results))
            except ImageError as e:
                problem = str(e).removeprefix(f"{path}: ")
            except OSError as e:
                problem = f"unreadable ({e.strerror or e})"
        results.append({"file": str(path)} | ({} if problem is None else {"error": problem}))
    if pixels:
        probabilities = softmax(predict_batches(predict, np.stack(pixels)))
        for slot, p in zip(slots, probabilities, strict=True):
            results[slot] = answer(results[slot]["file"], p, args.top)
    for result in results:
        if "error" in result:
            print(f"error: {result['file']}: {result['error']}", file=sys.stderr)
    if args.json:
        json.dump(results, out, indent=1)
        out.write("\n")
    else:
        out.writelines(line(r) + "\n" for r in results if "error" not in r)
    if any("error" in r for r in results):
        failed = sum("error" in r for r in results)
        raise SystemExit(f"error: {failed} of {len(results)} files could not be predicted")


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


def load_model(given: str | None) -> tuple[Logits, str]:
    """The model asked for, or the champion, or `models/model.pt` (saying so)."""
    if given is not None:
        return open_model(given), given
    try:
        return registered(CHAMPION, must_exist=True), CHAMPION
    except ModelError as e:
        log.warning("%s; predicting with %s instead", e, FALLBACK)
    try:
        return open_model(str(FALLBACK)), str(FALLBACK)
    except ModelError as e:
        raise ModelError(
            f"no model to predict with: no {CHAMPION} in the registry, and {e}. Train one with "
            "`make repro`, or pass --model"
        ) from None


def open_model(given: str) -> Logits:
    path = Path(given)
    if "://" in given or given.startswith("models:/") or (path / "MLmodel").is_file():
        return registered(given, must_exist=False)
    try:
        network = model_file.load_served(path)
    except model_file.CheckpointError as e:
        raise ModelError(str(e)) from None

    def logits(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return network(torch.from_numpy(pixels)).numpy()

    return logits


def registered(uri: str, must_exist: bool) -> Logits:
    """The MLflow model at `uri`, from the project's tracking store; the registry's champion only
    if that store exists (opening a missing SQLite store would create an empty one).

    Only its weights file is fetched and read as `model_file` reads any model file: the same
    network the served model runs, behind the same preprocessing (this package's), without
    downloading and running the code stored with it (half the start-up time).
    """
    import mlflow.artifacts  # a slow import: only when a registered model is used

    from mnist_pipeline.tracking.store import tracking_uri

    store = tracking_uri()
    if must_exist and store.startswith("sqlite:///") and not Path(store[10:]).is_file():
        raise ModelError(f"no tracking store {store[10:]}")
    mlflow.set_tracking_uri(store)
    try:
        if Path(uri, "MLmodel").is_file():
            folder = Path(uri)
        else:  # only the two files needed, not the model's stored code
            folder = Path(mlflow.artifacts.download_artifacts(f"{uri.rstrip('/')}/MLmodel")).parent
        flavor = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]["python_function"]
        weights = flavor["artifacts"]["weights"]["path"]
        if not (folder / weights).is_file():
            mlflow.artifacts.download_artifacts(
                f"{uri.rstrip('/')}/{weights}", dst_path=str(folder)
            )
    except Exception as e:  # MLflow's errors: no such model, alias, run or store; not ours
        raise ModelError(f"cannot load {uri} ({type(e).__name__}: {one_line(e)})") from None
    return open_model(str(folder / weights))


def predict_batches(predict: Logits, pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([predict(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH)])


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def answer(file: str, probabilities: np.ndarray, top: int) -> dict:
    ranked = np.argsort(-probabilities, kind="stable")[:top]
    return {
        "file": file,
        "digit": int(ranked[0]),
        "probability": round(float(probabilities[ranked[0]]), 4),
        "top": [
            {"digit": int(d), "probability": round(float(probabilities[d]), 4)} for d in ranked
        ],
    }


def line(result: dict) -> str:
    top = ", ".join(f"{t['digit']} {t['probability']:.3f}" for t in result["top"][1:])
    return f"{result['file']}: {result['digit']} ({result['probability']:.3f})" + (
        f"  next: {top}" if top else ""
    )


def progress(entries: list[tuple[Path, str | None]]) -> Iterable[tuple[Path, str | None]]:
    """A progress bar over many files, on a terminal's stderr only (not in logs, not with -q)."""
    if len(entries) < 20 or not sys.stderr.isatty() or not log.isEnabledFor(logging.INFO):
        return entries
    from tqdm import tqdm

    return tqdm(entries, unit="file", file=sys.stderr, leave=False)


if __name__ == "__main__":
    # The answers go to the real stdout even with -q, which silences only logs and progress.
    run_stage(partial(main, sys.stdout), ModelError)
