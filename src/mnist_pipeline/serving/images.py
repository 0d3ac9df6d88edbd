"""Image files as the network's input: the bytes of any common image file (`decode`), then a
photo, scan or drawing of one digit made into what the network was trained on (`to_mnist`),
the way MNIST itself was made; `load` does both.

MNIST (LeCun et al.): each digit's ink was size-normalised to fit a 20x20 box keeping its aspect
ratio, anti-aliased into grey levels, and placed in a 28x28 field with its centre of mass at the
centre; white ink on black. A photo or scan is dark ink on light paper, a drawing may be either,
at any size and place: so find the ink whichever its polarity, crop to it, and do the same.

Pillow reads PNG, JPEG, BMP, GIF, WebP and TIFF. A file is read whole before it is trusted:
`Image.open` only parses the header, so a file cut short would otherwise fail later, in the
middle of preprocessing, with an error that names neither the file nor the problem.

The work for any file is bounded: at most `MAX_BYTES` read, at most `MAX_PIXELS` decoded (a JPEG
up to Pillow's bomb limit is decoded at a reduced scale first, which its format allows), and the
picture reduced to `WORK` pixels on its longer side before any arithmetic on it. A digit needs
no more: it ends up 20 pixels tall. A small PNG can hold a huge, blank picture (Pillow's own bomb
limit is 89 million pixels), which would otherwise cost gigabytes per request (docs/results.md).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
SIZE = 28  # the field
BOX = 20  # the longer side of the digit's ink
CENTRE = 14.0  # where MNIST's centres of mass lie (row and column index, measured on its test set)
MIN_CONTRAST = 24.0  # grey levels between paper and ink below which an image is blank
RESAMPLING = Image.Resampling.LANCZOS
PAPER = 0.2  # ink weaker than this fraction of the ink's level is paper texture, noise or JPEG
TRIM = 0.002  # mass left out at each side of the crop: a speck of dust does not widen it
MAX_BYTES = 20 * 1024 * 1024  # a file; a photo of a digit is far smaller
MAX_PIXELS = 25_000_000  # decoded; a 24-megapixel photo passes whole, a larger JPEG reduced
WORK = 1024  # the longer side the picture is reduced to before any arithmetic


class ImageError(ValueError):
    """An image that cannot be predicted: unreadable, not an image, empty or blank; the message is
    one line naming the file."""


def decode(data: bytes, name: str) -> Image.Image:
    """The image in `data` (the first frame of an animation), at most `WORK` pixels on its longer
    side, turned upright as its EXIF says."""
    if not data:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    if len(data) > MAX_BYTES:
        raise ImageError(f"{name}: {TOO_LARGE}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            image.draft(image.mode, (WORK, WORK))  # JPEG: decoded at 1/2, 1/4 or 1/8 scale
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(
                    f"{name}: {image.width}x{image.height} pixels is more than the "
                    f"{MAX_PIXELS // 1_000_000} million accepted; scale the picture down"
                )
            image.load()
            image = reduced(image)
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image ({len(data)} bytes in none of {', '.join(FORMATS)})"
        ) from None
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: too large to be a digit ({one_line(e)})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # damaged or cut short
        raise ImageError(
            f"{name}: unreadable image, damaged or cut short ({one_line(e)})"
        ) from None
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{name}: the image is empty ({image.width}x{image.height} pixels)")
    return ImageOps.exif_transpose(image) or image


TOO_LARGE = f"more than {MAX_BYTES:,} bytes, too large for an image of a digit"


def read(path: Path) -> bytes:
    """The file's bytes, at most `MAX_BYTES` + 1 of them: enough to tell one that is too large."""
    with open(path, "rb") as file:
        return file.read(MAX_BYTES + 1)


def reduced(image: Image.Image) -> Image.Image:
    """At most `WORK` pixels on the longer side, by averaging whole blocks of pixels (fast, and
    every pixel counts: thin strokes are not skipped)."""
    factor = -(-max(image.size) // WORK)
    if factor == 1:
        return image
    if image.mode in ("P", "PA"):  # a palette, maybe with transparency: kept as alpha
        image = image.convert("RGBA")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    elif image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):  # 1-bit, CMYK, ...
        image = image.convert("RGB")
    return image.reduce(factor)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def to_mnist(image: Image.Image) -> np.ndarray:
    """float32 (28, 28), 0-255, white ink on black; `ImageError` for a blank image."""
    ink = ink_map(grey_levels(image))
    rows, cols = extent(ink.sum(axis=1)), extent(ink.sum(axis=0))
    digit = fit(ink[rows, cols])
    return centred(digit / digit.max() * 255.0).astype(np.float32)


def grey_levels(image: Image.Image) -> np.ndarray:
    """Luminance 0-255 as float32, transparency flattened onto the paper's colour.

    A drawing on a transparent canvas (mostly see-through) gets paper of the opposite brightness
    to its strokes' core; a picture with some transparency gets its own median colour as paper.
    """
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float greys (TIFF)
        grey = np.asarray(image, dtype=np.float32)
        if not np.isfinite(grey).all():
            raise ImageError("the picture holds NaN or infinite pixel values")
        low, high = float(grey.min()), float(grey.max())
        return (grey - low) * (255.0 / (high - low)) if high > low else grey * 0.0
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), dtype=np.float32)
    la = np.asarray(image.convert("RGBA").convert("LA"), dtype=np.float32)
    grey, alpha = la[..., 0], la[..., 1] / 255.0
    if alpha.min() >= 1.0:
        return grey
    visible = alpha > 0.5
    if visible.mean() < 0.5:
        # The strokes' own colour is their core's, away from the transparency: an anti-aliased
        # drawing saved with a palette keeps its light halo opaque, and on thin strokes the halo
        # outweighs the dark core (black paper, then, would turn a 3 into an outlined 8).
        mask = Image.fromarray(visible.astype(np.uint8) * 255)
        core = np.asarray(mask.filter(ImageFilter.MinFilter(3))) > 0
        inside = core if core.any() else visible
        strokes = float(grey[inside].mean()) if inside.any() else 0.0
        paper = 255.0 if strokes < 128.0 else 0.0
    else:
        paper = float(np.median(grey[visible]))
    return grey * alpha + paper * (1.0 - alpha)


def ink_map(grey: np.ndarray) -> np.ndarray:
    """0-1 ink: 1 where the strokes are full strength, 0 on the paper, either polarity.

    The paper is the median grey (a digit covers less than half its picture); the ink is whichever
    side of it reaches further. Its strength is read after a 3x3 median filter where the picture
    is large enough, so isolated noisy pixels neither set it nor pass for ink.
    """
    paper = float(np.median(grey))
    dark = paper - float(grey.min()) >= float(grey.max()) - paper
    ink = np.clip(paper - grey if dark else grey - paper, 0.0, None)
    level = float(ink.max())
    if min(ink.shape) >= 3 * SIZE:
        filtered = Image.fromarray(ink).filter(ImageFilter.MedianFilter(3))
        level = float(np.asarray(filtered).max()) or level
    if level < MIN_CONTRAST:
        raise ImageError(
            f"blank image: no ink, at most {level:.0f} grey levels from the paper "
            f"(at least {MIN_CONTRAST:.0f} needed)"
        )
    return np.clip((ink - PAPER * level) / ((1.0 - PAPER) * level), 0.0, 1.0)


def extent(mass: np.ndarray) -> slice:
    """The span of rows (or columns) holding the ink, less `TRIM` of its mass at either end."""
    cumulative = np.cumsum(mass) / mass.sum()
    first = int(np.searchsorted(cumulative, TRIM, side="right"))
    last = int(np.searchsorted(cumulative, 1.0 - TRIM, side="left"))
    return slice(first, max(last, first) + 1)


def fit(crop: np.ndarray) -> np.ndarray:
    """The crop with its longer side scaled to `BOX` pixels, aspect kept, anti-aliased."""
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(crop.astype(np.float32)).resize(size, RESAMPLING)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, None)


def centred(digit: np.ndarray) -> np.ndarray:
    """The digit on a 28x28 black field, moved by whole pixels so its centre of mass is at
    (14, 14), as in MNIST; ink pushed past the edge is cut off."""
    rows, cols = np.indices(digit.shape)
    mass = digit.sum()
    top = round(CENTRE - float((rows * digit).sum()) / mass)
    left = round(CENTRE - float((cols * digit).sum()) / mass)
    field = np.zeros((SIZE, SIZE), dtype=np.float32)
    height, width = digit.shape
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + height, SIZE), min(left + width, SIZE)
    field[r0:r1, c0:c1] = digit[r0 - top : r1 - top, c0 - left : c1 - left]
    return field


def stored(pixels: np.ndarray) -> np.ndarray:
    """Pixels 0-255 as MNIST stores them: uint8, rounded."""
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


def load(data: bytes, name: str) -> np.ndarray:
    """The bytes of an image file as float32 (28, 28) pixels 0-255; `ImageError` naming `name`."""
    try:
        return to_mnist(decode(data, name))
    except ImageError as e:
        raise e if str(e).startswith(f"{name}:") else ImageError(f"{name}: {e}") from None
