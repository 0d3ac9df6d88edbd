"""Image files → MNIST pixels: every common format, either polarity, any size and place, as MNIST
was made (20-px box, centre of mass at the centre); bad files named in one line."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_pipeline.serving.images import MAX_BYTES, WORK, ImageError, decode, load, to_mnist


def page(size=(300, 220), box=(60, 30, 140, 190), ink="black", paper="white", mode="RGB"):
    """A '4'-like digit drawn with a thick pen in `box` on a page."""
    image = Image.new(mode, size, paper)
    left, top, right, bottom = box
    pen = ImageDraw.Draw(image)
    middle = top + (bottom - top) * 0.6
    pen.line([(right - 15, bottom), (right - 15, top), (left, middle), (right, middle)], ink, 12)
    return image


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


REFERENCE = load(encoded(page()), "ref.png")


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("PNG", "RGB"), ("JPEG", "RGB"), ("BMP", "RGB"), ("GIF", "P"), ("WEBP", "RGB"),
     ("TIFF", "RGB"), ("PNG", "L"), ("PNG", "LA"), ("PNG", "RGBA"), ("TIFF", "I;16")],
)  # fmt: skip
def test_every_format_and_mode_gives_the_same_digit(fmt: str, mode: str) -> None:
    image = page().convert(mode) if mode != "I;16" else page().convert("L").convert("I;16")
    pixels = load(encoded(image, fmt), f"digit.{fmt.lower()}")
    assert pixels.shape == (28, 28) and pixels.dtype == np.float32
    assert pixels.min() >= 0.0 and pixels.max() == pytest.approx(255.0)
    assert np.abs(pixels - REFERENCE).mean() < 6.0  # lossy formats differ a little


def test_mnist_geometry_longer_side_20_px_centre_of_mass_at_14() -> None:
    rows, cols = np.nonzero(REFERENCE > 0)
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert max(height, width) in (20, 21)  # 20 px, plus a pixel when the centring shifts a half
    mass = REFERENCE.sum()
    centre = [(np.indices((28, 28))[k] * REFERENCE).sum() / mass for k in (0, 1)]
    assert centre == pytest.approx([14.0, 14.0], abs=0.5)
    assert REFERENCE[0].sum() == REFERENCE[:, 0].sum() == 0  # black border, white ink


def test_polarity_size_and_place_do_not_matter() -> None:
    light_on_dark = page(ink="white", paper="black")
    small_elsewhere = page(size=(900, 700), box=(500, 400, 580, 560))
    larger = page().resize((900, 660), Image.LANCZOS)
    for image in (light_on_dark, small_elsewhere, larger):
        assert np.abs(to_mnist(image) - REFERENCE).mean() < 4.0


def test_strokes_on_a_transparent_canvas() -> None:
    """What a browser canvas's `toDataURL()` gives: black strokes, transparent background."""
    strokes = page(ink=(0, 0, 0, 255), paper=(0, 0, 0, 0), mode="RGBA")
    white = page(ink=(255, 255, 255, 255), paper=(0, 0, 0, 0), mode="RGBA")
    for image in (strokes, white):
        assert np.abs(to_mnist(image) - REFERENCE).mean() < 4.0


def test_paper_noise_and_a_speck_of_dust_are_not_ink() -> None:
    grey = np.asarray(page().convert("L"), dtype=np.float32) * 0.8 + 30  # grey paper, grey ink
    grey += np.random.default_rng(0).normal(0, 6, grey.shape)
    grey[5:7, 290:292] = 40  # a speck far from the digit
    noisy = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8))
    assert np.abs(to_mnist(noisy) - REFERENCE).mean() < 8.0


BAD = {
    "empty": (b"", r"^x\.png: the file is empty \(0 bytes\)$"),
    "text": (b"hello, world", r"^x\.png: not an image \(12 bytes in none of PNG, JPEG"),
    "cut short": (encoded(page())[:400], r"^x\.png: unreadable image, damaged or cut short"),
    "blank": (encoded(Image.new("L", (50, 40), 200)), r"^x\.png: blank image: no ink"),
    "faint": (encoded(page(ink=(190,) * 3, paper=(200,) * 3)), r"^x\.png: blank image"),
}


@pytest.mark.parametrize("data", [v[0] for v in BAD.values()], ids=BAD.keys())
def test_bad_files_fail_in_one_line_naming_the_file(data: bytes) -> None:
    message = dict(BAD.values())[data]
    with pytest.raises(ImageError, match=message) as info:
        load(data, "x.png")
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)


def test_decode_turns_photos_upright_and_takes_the_first_frame() -> None:
    upright = page()
    rotated = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90° clockwise to view": undoes the rotation above
    data = encoded(rotated, "JPEG", exif=exif.tobytes(), quality=95)
    assert decode(data, "photo.jpg").size == upright.size
    frames = [page(), Image.new("RGB", (300, 220), "white")]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert np.abs(load(gif, "anim.gif") - REFERENCE).mean() < 6.0


def test_a_picture_over_the_pixel_limit_is_refused_naming_the_limit() -> None:
    """A small PNG can hold a huge blank picture: refused from its header, before decoding."""
    data = encoded(Image.new("1", (5001, 5000), 1))  # 25,005,000 pixels in a few KB
    assert len(data) < 100_000
    with pytest.raises(ImageError, match=r"^big\.png: 5001x5000 pixels is more than the 25 mill"):
        load(data, "big.png")


def test_a_file_over_the_byte_limit_is_refused_unread() -> None:
    with pytest.raises(ImageError, match=r"^huge\.png: more than 20,971,520 bytes, too large"):
        load(b"\x89PNG" + bytes(MAX_BYTES), "huge.png")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_large_picture_is_worked_on_reduced_and_reads_the_same(fmt: str) -> None:
    """A JPEG decoded at reduced scale, any other format reduced right after decoding: the work
    that follows is on at most WORK pixels a side, and the digit comes out as drawn small."""
    big = page(size=(4000, 3000), box=(1400, 600, 2200, 2400)).resize((4000, 3000))
    pen = ImageDraw.Draw(big)
    pen.line([(2050, 2400), (2050, 600), (1400, 1680), (2200, 1680)], "black", 120)
    image = decode(encoded(big, fmt), "big")
    assert max(image.size) <= WORK
    small = load(encoded(big.resize((400, 300)), fmt), "small")
    assert np.corrcoef(to_mnist(image).ravel(), small.ravel())[0, 1] > 0.95


def test_a_thin_palette_drawing_on_transparent_paper_reads_as_in_grey() -> None:
    """Anti-aliased thin strokes saved with a palette, the white paper's colour transparent: the
    light halo stays opaque and outweighs the dark core. The paper must still come out white
    (it came out black, and the 3 was read as an outlined 8)."""
    big = Image.new("L", (800, 800), 255)
    pen = ImageDraw.Draw(big)
    pen.arc([250, 120, 550, 400], 200, 90, fill=0, width=14)
    pen.arc([250, 380, 550, 680], 270, 160, fill=0, width=14)
    three = big.resize((100, 100), Image.Resampling.LANCZOS)
    palette = three.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    colours = palette.getpalette()
    white = max(range(len(colours) // 3), key=lambda i: sum(colours[3 * i : 3 * i + 3]))
    transparent = load(encoded(palette, transparency=white), "three.png")
    grey = load(encoded(three), "grey.png")
    assert np.corrcoef(transparent.ravel(), grey.ravel())[0, 1] > 0.95


def test_a_float_picture_with_nan_pixels_is_refused_naming_it() -> None:
    pixels = np.full((40, 40), 0.5, dtype=np.float32)
    pixels[10:30, 18:22], pixels[0, 0] = 1.0, np.nan
    with pytest.raises(ImageError, match=r"^nan\.tif: the picture holds NaN"):
        load(encoded(Image.fromarray(pixels, "F"), "TIFF"), "nan.tif")
