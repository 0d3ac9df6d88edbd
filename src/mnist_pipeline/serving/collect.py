"""Adding a labelled picture to `data/yours/` (`data/yours.py`): from `predict --label` and from
the page's "Wrong? It's a ..." button.

The picture is checked as `predict` checks it (the same one-line refusal), then written as it
was given and as the network received it, both under its content hash: the same picture saved
twice is one file, and saved under another digit it moves there (the last label wins).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mnist_pipeline.data.yours import NAME, SEEN, YOURS
from mnist_pipeline.serving.images import load, stored
from mnist_pipeline.utils.atomic import atomic_path

EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "GIF": "gif", "WEBP": "webp"}
EXTENSIONS["TIFF"] = "tif"


@dataclass(frozen=True)
class Saved:
    digit: int
    digest: str
    picture: Path
    was: int | None  # the digit it was saved under before, if it was already among yours


def save(data: bytes, name: str, digit: int, root: Path) -> Saved:
    """`ImageError` (one line naming `name`) for what predict would refuse; `ValueError` for a
    digit that is not 0-9."""
    if isinstance(digit, bool) or digit not in range(10):
        raise ValueError(f"the label {digit!r} is not a digit 0-9")
    pixels = load(data, name)
    digest = hashlib.sha256(data).hexdigest()[:16]
    extension = EXTENSIONS.get(Image.open(io.BytesIO(data)).format or "", "png")  # the header's
    was = next((d for d in range(10) if list((root / YOURS / str(d)).glob(f"{digest}.*"))), None)
    if was is not None and was != digit:  # a new label for a picture already saved: it moves
        remove(root, was, digest)
    folder = root / YOURS / str(digit)
    folder.mkdir(parents=True, exist_ok=True)
    picture = folder / f"{digest}.{extension}"
    if not picture.exists():
        with atomic_path(picture) as tmp:
            tmp.write_bytes(data)
    seen = folder / f"{digest}{SEEN}"
    if not seen.exists():
        with atomic_path(seen) as tmp:
            Image.fromarray(stored(pixels)).save(tmp, "PNG")
    return Saved(digit, digest, picture, was)


def undo(root: Path, digit: int, digest: str, was: int | None) -> bool:
    """Put things back as they were before a `save` (`Saved.was`): a new picture removed, a
    moved one moved back, one already there under `digit` left alone. Whether anything moved."""
    if was == digit or not NAME.fullmatch(digest) or digit not in range(10):
        return False
    if was is None:
        return remove(root, digit, digest)
    if was not in range(10):
        return False
    back = root / YOURS / str(was)
    back.mkdir(parents=True, exist_ok=True)
    found = list((root / YOURS / str(digit)).glob(f"{digest}.*"))
    for path in found:
        os.replace(path, back / path.name)
    return bool(found)


def remove(root: Path, digit: int, digest: str) -> bool:
    """Take a saved picture away; whether there was one."""
    if not NAME.fullmatch(digest) or digit not in range(10):
        return False
    found = list((root / YOURS / str(digit)).glob(f"{digest}.*"))
    for path in found:
        path.unlink(missing_ok=True)
    return bool(found)
