"""IDX encode/decode: round trips, and every header defect refused with a message naming it."""

import struct

import numpy as np
import pytest

from mnist_pipeline.data import idx
from mnist_pipeline.data.idx import IDXError


@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([0, 9, 3, 255], dtype=np.uint8),
        np.array([[-(2**31), -1], [0, 2**31 - 1]], dtype=">i4"),
        np.array([1, -2, 300], dtype="<i4"),  # native order is written big-endian
        np.array([0.5, -1.25], dtype=">f8"),
    ],
    ids=["uint8-3d", "uint8-1d", "int32-be", "int32-le", "float64"],
)
def test_round_trip(array):
    decoded = idx.decode(idx.encode(array))
    assert decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test_encode_header_layout():
    data = idx.encode(np.zeros((2, 3), dtype=np.uint8))
    assert data[:12] == bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3])
    assert len(data) == 12 + 6


def test_multibyte_items_are_big_endian():
    data = idx.encode(np.array([1], dtype="<i4"))
    assert data[2] == 0x0C
    assert data[-4:] == b"\x00\x00\x00\x01"


def header(code=0x08, shape=(2,)):
    return struct.pack(f">HBB{len(shape)}I", 0, code, len(shape), *shape)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"\x00\x00\x08", "3 bytes is too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic number 0x01000801"),
        (b"\x00\x01\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX dtype code 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "declares 3 dimensions but the file ends"),
        (header(shape=(2, 3)) + b"\x00" * 5, "is truncated: header says shape (2, 3)"),
        (header(0x0C, (2,)) + b"\x00" * 7, "is truncated"),
        (header(shape=(2,)) + b"\x00" * 3, "has trailing bytes"),
    ],
    ids=[
        "too-short",
        "magic-byte0",
        "magic-byte1",
        "dtype",
        "header-truncated",
        "payload-truncated",
        "payload-truncated-i4",
        "trailing",
    ],
)
def test_decode_rejects(data, expected):
    with pytest.raises(IDXError, match=r"^some-file: ") as info:
        idx.decode(data, "some-file")
    assert expected in str(info.value)


def test_decode_reports_sizes():
    with pytest.raises(IDXError, match=r"\(18 bytes\), file has 17"):
        idx.decode(header(shape=(2, 3)) + b"\x00" * 5)


def test_encode_rejects_unsupported_dtype():
    with pytest.raises(IDXError, match="no IDX code"):
        idx.encode(np.zeros(2, dtype=np.int64))


@pytest.fixture
def files(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint64).reshape(2, 28, 28).astype(np.uint8)
    labels = np.array([3, 9], dtype=np.uint8)
    paths = {
        "images": tmp_path / "imgs-idx3",
        "labels": tmp_path / "lbls-idx1",
        "bad-labels": tmp_path / "bad-idx1",
        "int-images": tmp_path / "int-idx3",
        "big-images": tmp_path / "big-idx3",
    }
    paths["images"].write_bytes(idx.encode(images))
    paths["labels"].write_bytes(idx.encode(labels))
    paths["bad-labels"].write_bytes(idx.encode(np.array([1, 10, 4, 200], dtype=np.uint8)))
    (tmp_path / "four-idx1").write_bytes(idx.encode(np.array([1, 2, 3, 4], dtype=np.uint8)))
    paths["int-images"].write_bytes(idx.encode(images.astype(">i4")))
    paths["big-images"].write_bytes(idx.encode(np.zeros((2, 32, 32), dtype=np.uint8)))
    return paths, images, labels


def test_read_images_and_labels(files):
    paths, images, labels = files
    np.testing.assert_array_equal(idx.read_images(paths["images"]), images)
    np.testing.assert_array_equal(idx.read_labels(paths["labels"]), labels)


def test_read_images_rejects_labels_file(files):
    paths, _, _ = files
    with pytest.raises(IDXError, match=r"^lbls-idx1: expected uint8 images shaped \(N, 28, 28\)"):
        idx.read_images(paths["labels"])


def test_read_images_rejects_non_uint8(files):
    paths, _, _ = files
    with pytest.raises(IDXError, match=r"^int-idx3: .*got >i4"):
        idx.read_images(paths["int-images"])


def test_read_images_rejects_wrong_size(files):
    paths, _, _ = files
    with pytest.raises(IDXError, match=r"^big-idx3: .*shape \(2, 32, 32\)"):
        idx.read_images(paths["big-images"])
    assert idx.read_images(paths["big-images"], size=(32, 32)).shape == (2, 32, 32)


def test_read_examples_pairs_images_and_labels(files):
    paths, images, labels = files
    got_images, got_labels = idx.read_examples(paths["images"], paths["labels"])
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_examples_rejects_count_mismatch(files):
    paths, _, _ = files
    with pytest.raises(IDXError, match=r"^imgs-idx3 holds 2 images but four-idx1 holds 4 labels"):
        idx.read_examples(paths["images"], paths["bad-labels"].with_name("four-idx1"))


def test_read_labels_rejects_images_file(files):
    paths, _, _ = files
    with pytest.raises(IDXError, match=r"^imgs-idx3: expected uint8 labels of 1 dimension"):
        idx.read_labels(paths["images"])


def test_read_labels_rejects_out_of_range(files):
    paths, _, _ = files
    with pytest.raises(IDXError, match=r"^bad-idx1: 2 labels outside 0\.\.9") as info:
        idx.read_labels(paths["bad-labels"])
    assert "first at index 1: 10" in str(info.value)


def test_read_labels_num_classes(files):
    paths, _, _ = files
    with pytest.raises(IDXError, match=r"outside 0\.\.4"):
        idx.read_labels(paths["labels"], num_classes=5)
