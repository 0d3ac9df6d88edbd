"""The IDX file format (LeCun's MNIST format), decoded with every header fact checked.

An IDX file is: two zero bytes, a dtype code, the number of dimensions, one big-endian uint32 per
dimension, then the items in row-major order. A file that disagrees with its own header is refused
with a message naming the file and the defect, never silently reshaped.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# dtype codes from the IDX spec; multi-byte types are big-endian.
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES = {dtype: code for code, dtype in DTYPES.items()}


class IDXError(ValueError):
    """A file is not the IDX data it claims to be."""


def decode(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array, checking magic, dtype, dimensions and length."""
    if len(data) < 4:
        raise IDXError(f"{name}: {len(data)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise IDXError(f"{name}: bad magic number 0x{data[:4].hex()} (an IDX file starts 00 00)")
    if code not in DTYPES:
        raise IDXError(f"{name}: unknown IDX dtype code 0x{code:02x}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IDXError(f"{name}: header declares {ndim} dimensions but the file ends inside it")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = DTYPES[code]
    expected = header_len + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "is truncated" if len(data) < expected else "has trailing bytes"
        raise IDXError(
            f"{name}: {problem}: header says shape {shape} ({expected} bytes), file has {len(data)}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)


def encode(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (the inverse of `decode`)."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in CODES:
        raise IDXError(f"dtype {array.dtype} has no IDX code")
    header = struct.pack(f">HBB{array.ndim}I", 0, CODES[dtype], array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def read_images(path: Path, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Read an IDX file of uint8 images shaped (N, *size)."""
    images = decode(path.read_bytes(), path.name)
    if images.dtype != np.uint8 or images.shape[1:] != size:
        raise IDXError(
            f"{path.name}: expected uint8 images shaped (N, {size[0]}, {size[1]}), got "
            f"{images.dtype} with shape {images.shape}"
        )
    return images


def read_labels(path: Path, num_classes: int = 10) -> np.ndarray:
    """Read an IDX file of uint8 class labels shaped (N,), each in [0, num_classes)."""
    labels = decode(path.read_bytes(), path.name)
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise IDXError(
            f"{path.name}: expected uint8 labels of 1 dimension, got {labels.dtype} "
            f"with shape {labels.shape}"
        )
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise IDXError(
            f"{path.name}: {bad.size} labels outside 0..{num_classes - 1} "
            f"(first at index {bad[0]}: {labels[bad[0]]})"
        )
    return labels


def read_examples(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and its labels file, which must describe the same number of examples."""
    images, labels = read_images(images_path), read_labels(labels_path)
    if len(images) != len(labels):
        raise IDXError(
            f"{images_path.name} holds {len(images)} images but {labels_path.name} holds "
            f"{len(labels)} labels"
        )
    return images, labels
