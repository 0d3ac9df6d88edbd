"""Pictures that are not digits, as someone might send them to the model: shapes, grids,
checkerboards, stripes, noise, blobs, gradients, scribbles and letters, dark on light paper.

They teach the "not sure" rule what to refuse (`training/doubt.py`) and, drawn with another seed,
test it (`benchmarks/handwriting.py`). Nothing that reads as a digit: no circle (0), no single
straight line (1), and no letter that passes for one (O, I, l, Z, S, B, G, q, ...).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LETTERS = "ACEFHKMNPRUVWXYacefhkmnprtuvwxy"
KINDS = (
    "x", "plus", "square", "filled", "triangle", "dot", "star", "grid", "checker", "stripes",
    "noise", "blobs", "gradient", "scribble", "letter", "letter", "letter",
)  # fmt: skip
SIZE = 200


def generate(count: int, seed: int, font: str | None = None) -> list[tuple[str, Image.Image]]:
    """`count` pictures, each kind in turn, (kind, picture); letters in `font` (a TrueType file),
    else Pillow's own font."""
    rng = np.random.default_rng(seed)
    return [
        (kind, picture(kind, rng, font)) for kind in (KINDS[i % len(KINDS)] for i in range(count))
    ]


def picture(kind: str, rng: np.random.Generator, font: str | None = None) -> Image.Image:
    if kind in TEXTURES:
        return TEXTURES[kind](rng)
    image = Image.new("L", (SIZE, SIZE), 255)
    pen = ImageDraw.Draw(image)
    width, c, r = int(rng.integers(6, 20)), SIZE / 2, SIZE * rng.uniform(0.2, 0.4)
    if kind == "x":
        pen.line([(c - r, c - r), (c + r, c + r)], 0, width)
        pen.line([(c - r, c + r), (c + r, c - r)], 0, width)
    elif kind == "plus":
        pen.line([(c - r, c), (c + r, c)], 0, width)
        pen.line([(c, c - r), (c, c + r)], 0, width)
    elif kind == "square":
        pen.rectangle([c - r, c - r * rng.uniform(0.6, 1.0), c + r, c + r], outline=0, width=width)
    elif kind == "filled":
        pen.rectangle([c - r, c - r, c + r, c + r * rng.uniform(0.5, 1.0)], fill=0)
    elif kind == "triangle":
        pen.polygon([(c, c - r), (c - r, c + r), (c + r, c + r)], outline=0, width=width)
    elif kind == "dot":
        dot = r * rng.uniform(0.2, 1.0)
        pen.ellipse([c - dot, c - dot, c + dot, c + dot], fill=0)
    elif kind == "star":
        radii = [r if i % 2 == 0 else 0.45 * r for i in range(10)]
        angles = [i * np.pi / 5 - np.pi / 2 for i in range(10)]
        points = [
            (c + q * np.cos(a), c + q * np.sin(a)) for q, a in zip(radii, angles, strict=True)
        ]
        pen.polygon(points, outline=0, width=width)
    elif kind == "grid":
        step = SIZE / int(rng.integers(3, 7))
        for x in np.arange(step, SIZE - 1, step):
            pen.line([(x, 0), (x, SIZE)], 0, max(2, width // 3))
            pen.line([(0, x), (SIZE, x)], 0, max(2, width // 3))
    elif kind == "scribble":
        points = [
            tuple(rng.uniform(0.15 * SIZE, 0.85 * SIZE, 2)) for _ in range(rng.integers(6, 14))
        ]
        pen.line(points, 0, width, joint="curve")
    elif kind == "letter":
        size = int(SIZE * rng.uniform(0.5, 0.8))
        face = ImageFont.truetype(font, size) if font else ImageFont.load_default(size=size)
        pen.text((c, c), LETTERS[int(rng.integers(len(LETTERS)))], fill=0, font=face, anchor="mm")
    else:
        raise ValueError(f"no kind of picture {kind!r}: one of {sorted(set(KINDS))}")
    return image.rotate(float(rng.uniform(-20, 20)), fillcolor=255)


def checker(rng: np.random.Generator) -> Image.Image:
    cells = int(rng.integers(3, 9))
    board = np.indices((cells, cells)).sum(axis=0) % 2 * 255
    return Image.fromarray(board.astype(np.uint8)).resize((SIZE, SIZE), Image.Resampling.NEAREST)


def stripes(rng: np.random.Generator) -> Image.Image:
    bands = np.arange(int(rng.integers(3, 9))) % 2 * 255
    return Image.fromarray(bands[None].astype(np.uint8)).resize(
        (SIZE, SIZE), Image.Resampling.NEAREST
    )


def noise(rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (SIZE, SIZE)).astype(np.uint8))


def blobs(rng: np.random.Generator) -> Image.Image:
    spots = (rng.normal(size=(SIZE // 10, SIZE // 10)) <= 0.8) * 255
    return Image.fromarray(spots.astype(np.uint8)).resize((SIZE, SIZE))


def gradient(rng: np.random.Generator) -> Image.Image:
    ramp = np.linspace(0, 255, SIZE)[None].repeat(SIZE, axis=0).astype(np.uint8)
    return Image.fromarray(ramp).rotate(float(rng.uniform(0, 360)), fillcolor=255)


TEXTURES = {
    "checker": checker, "stripes": stripes, "noise": noise, "blobs": blobs, "gradient": gradient,
}  # fmt: skip
