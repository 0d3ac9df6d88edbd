"""Your own labelled digits, `data/yours/<digit>/`: where they are kept, and which are held out.

Each digit is two files named by the content hash of the file as it was given: `<hash>.<ext>`,
the picture itself, and `<hash>.28x28.png`, what the network received, for looking at. The
pipeline reads the pictures (`preprocess`), never the names a user or a request chose. The folder
is DVC data (the `yours` stage in dvc.yaml): versioned, pushed and pulled like the rest, and it
leaves the machine only with `dvc push`.
"""

from __future__ import annotations

import re
from pathlib import Path

YOURS = Path("data/yours")
SEEN = ".28x28.png"  # the suffix of what the network received
NAME = re.compile(r"[0-9a-f]{16}")
HELD_OUT = 5  # one picture in five is held out, chosen by its hash


def pictures(folder: Path) -> list[tuple[int, str, Path]]:
    """(digit, hash, picture) for every picture under `folder`, in a fixed order."""
    found = []
    for digit in range(10):
        for path in sorted((folder / str(digit)).glob("*")):
            digest = path.name.split(".")[0]
            if NAME.fullmatch(digest) and not path.name.endswith(SEEN) and path.is_file():
                found.append((digit, digest, path))
    return found


def held_out(found: list[tuple[int, str, Path]]) -> set[str]:
    """The hashes kept for testing: those divisible by `HELD_OUT`, and for a digit with at least
    `HELD_OUT` pictures and none of those, its smallest hash. A picture held out by its own hash
    stays held out as digits are added; only that one fallback pick per digit can change (back to
    training once the digit has a picture of the first kind, or to a smaller hash)."""
    chosen = {digest for _, digest, _ in found if int(digest, 16) % HELD_OUT == 0}
    for digit in range(10):
        mine = sorted(digest for d, digest, _ in found if d == digit)
        if len(mine) >= HELD_OUT and not chosen & set(mine):
            chosen.add(mine[0])
    return chosen
