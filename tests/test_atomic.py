"""Atomic output: the old file or the whole new one, never a half-written file or a stray temp."""

import json
import os
import stat

import pytest

from mnist_pipeline.utils.atomic import atomic_path, write_json, write_text


def test_replaces_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent  # same filesystem, so the rename is atomic
        assert tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible until the block succeeds
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_creates_parent_directories(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    write_text(target, "hello")
    assert target.read_text() == "hello"


def test_exception_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_exception_without_old_file_leaves_nothing(tmp_path):
    with pytest.raises(KeyError), atomic_path(tmp_path / "new.txt") as tmp:
        tmp.write_text("half")
        raise KeyError("x")
    assert list(tmp_path.iterdir()) == []


def test_write_json_is_valid_and_sorted(tmp_path):
    path = tmp_path / "m.json"
    data = {"zeta": 1, "alpha": {"b": [1, 2], "a": 0.5}, "mid": None}
    write_json(path, data)
    text = path.read_text()
    assert json.loads(text) == data
    assert text.endswith("}\n")
    keys = [line.strip().split(":")[0] for line in text.splitlines() if ":" in line]
    assert keys == ['"alpha"', '"a"', '"b"', '"mid"', '"zeta"']


def test_mode_follows_the_umask_without_touching_it(tmp_path, monkeypatch):
    """Setting the process-wide umask, even for a moment, races with every other thread."""
    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda *a: pytest.fail("atomic_path changed the umask"))
        write_text(tmp_path / "out.txt", "x")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o640


def test_the_directory_is_synced_after_the_rename(tmp_path, monkeypatch):
    """Without it, a power loss after the rename can bring the old directory entry back."""
    synced: list[tuple[bool, bool]] = []  # (is a directory, target already renamed in)
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), (tmp_path / "out.txt").exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_text(tmp_path / "out.txt", "x")
    assert synced == [(False, False), (True, True)]  # the data, then the directory entry
