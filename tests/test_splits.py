"""The processed dataset: stratified split, pixel statistics from train only, npz round trip."""

import json

import numpy as np
import pytest

from mnist_pipeline.data.splits import Split, load, load_stats, pixel_stats, save, stratified_split

# unequal classes: 0 x 50, 1 x 30, 2 x 13, 3 x 7
LABELS = np.random.default_rng(0).permutation(np.repeat([0, 1, 2, 3], [50, 30, 13, 7]))


@pytest.mark.parametrize("val_size", [1, 9, 25, 50, 99])
def test_split_partitions_all_indices(val_size):
    train, val = stratified_split(LABELS, val_size, seed=0)
    assert len(val) == val_size
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(LABELS)))


@pytest.mark.parametrize("val_size", [1, 9, 25, 50, 99])
def test_split_is_stratified(val_size):
    _, val = stratified_split(LABELS, val_size, seed=3)
    counts = np.bincount(LABELS, minlength=4)
    exact = val_size * counts / len(LABELS)
    got = np.bincount(LABELS[val], minlength=4)
    assert np.all(np.abs(got - exact) < 1), (got, exact)


def test_split_is_deterministic_per_seed():
    a = stratified_split(LABELS, 20, seed=7)
    b = stratified_split(LABELS, 20, seed=7)
    c = stratified_split(LABELS, 20, seed=8)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("val_size", [0, -1, len(LABELS), len(LABELS) + 5])
def test_split_rejects_bad_val_size(val_size):
    with pytest.raises(ValueError, match=rf"data\.val_size={val_size} must be between 1 and 99"):
        stratified_split(LABELS, val_size, seed=0)


def test_pixel_stats_known_values():
    images = np.array([[[0, 255], [0, 255]]], dtype=np.uint8)
    assert pixel_stats(images) == pytest.approx((0.5, 0.5))
    mean, std = pixel_stats(np.full((2, 3, 3), 51, dtype=np.uint8))
    assert mean == pytest.approx(0.2)
    assert std == pytest.approx(0.0)


def test_pixel_stats_no_uint8_overflow():
    images = np.full((100, 28, 28), 255, dtype=np.uint8)
    assert pixel_stats(images) == pytest.approx((1.0, 0.0))


def make_split(n, value, seed):
    rng = np.random.default_rng(seed)
    images = np.full((n, 28, 28), value, dtype=np.uint8)
    images[:, :14] = rng.integers(0, 256, size=(n, 14, 28), dtype=np.uint8)
    return Split(images, (np.arange(n) % 10).astype(np.int64))


@pytest.fixture
def splits():
    """Train pixels half 0, val and test pixels half 255: statistics that leaked would show."""
    return {
        "train": make_split(30, 0, seed=1),
        "val": make_split(10, 255, seed=2),
        "test": make_split(20, 255, seed=3),
    }


def test_save_load_round_trip(tmp_path, splits):
    save(splits, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "stats.json",
        "test.npz",
        "train.npz",
        "val.npz",
    ]
    for name, split in splits.items():
        loaded = load(tmp_path, name)
        assert loaded.images.dtype == np.uint8
        assert loaded.labels.dtype == np.int64
        np.testing.assert_array_equal(loaded.images, split.images)
        np.testing.assert_array_equal(loaded.labels, split.labels)


def test_stats_come_from_train_only(tmp_path, splits):
    save(splits, tmp_path)
    stats = load_stats(tmp_path)
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    mean, std = pixel_stats(splits["train"].images)
    assert stats["mean"] == pytest.approx(mean)
    assert stats["std"] == pytest.approx(std)
    assert stats["mean"] < 0.3  # val/test pixels of 255 would pull it well above
    assert stats["counts"] == {"train": 30, "val": 10, "test": 20}
    assert stats["class_counts"]["val"] == [1] * 10
    assert stats["class_counts"]["train"] == [3] * 10


def test_split_take_keeps_pairs_aligned():
    split = Split(np.arange(5 * 28 * 28, dtype=np.int64).reshape(5, 28, 28), np.arange(5))
    part = split.take(np.array([4, 1]))
    assert len(part) == 2
    np.testing.assert_array_equal(part.labels, [4, 1])
    np.testing.assert_array_equal(part.images, split.images[[4, 1]])
