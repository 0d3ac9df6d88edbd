"""The SQLite store refused before any training, in one paragraph: read-only, locked, or an
experiment whose artifact folder was left behind by a moved or copied repository."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from omegaconf import DictConfig, OmegaConf

from mnist_pipeline.tracking import store
from mnist_pipeline.tracking.store import TrackingError, connect
from stores import fresh_store


@pytest.fixture(autouse=True)
def own_tracking(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store as a first run leaves it."""
    folder = tmp_path_factory.mktemp("first")
    connect(tracking(f"sqlite:///{fresh_store(tmp_path_factory, folder)}"))
    mlflow.set_tracking_uri(None)
    return folder


def tracking(uri: str, experiment: str = "mnist") -> DictConfig:
    return OmegaConf.create({"uri": uri, "experiment": experiment})


def copy_of(first: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(first / "mlflow.db", folder / "mlflow.db")
    return folder / "mlflow.db"


def runs_in(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT count(*) FROM runs").fetchone()[0]


def test_a_read_only_store_is_refused_before_any_run(first: Path) -> None:
    db = first / "mlflow.db"
    uri = f"sqlite:///file:{db}?mode=ro&uri=true"  # root ignores file permissions: SQLite's own
    with pytest.raises(TrackingError) as info:
        connect(tracking(uri))
    message = str(info.value)
    assert uri in message and "attempt to write a readonly database" in message
    assert "chmod u+w" in message and "Nothing was trained" in message and "\n" not in message
    assert runs_in(db) == 0


def test_a_locked_store_says_another_process_holds_it(
    first: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = first / "mlflow.db"
    monkeypatch.setattr(store, "LOCK_WAIT_S", 0.2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process mid-write: reads go on, writes wait
    try:
        with pytest.raises(TrackingError, match=r"database is locked.*another process holds it"):
            connect(tracking(f"sqlite:///{db}"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert runs_in(db) == 0


@pytest.mark.parametrize("how", ["moved", "copied"])
def test_a_moved_or_copied_store_is_refused_naming_both_folders(
    first: Path, tmp_path: Path, how: str
) -> None:
    db = copy_of(first, tmp_path / "new")
    old = first / "mlruns"
    old.mkdir(exist_ok=True)  # where the first run's artifacts went
    if how == "moved":  # from a folder that is gone
        old = tmp_path / "gone" / "mlruns"
        with sqlite3.connect(db) as c:
            c.execute("UPDATE experiments SET artifact_location = ?", (old.as_uri(),))
    with pytest.raises(TrackingError) as info:
        connect(tracking(f"sqlite:///{db}"))
    message = str(info.value)
    assert f"keeps its artifacts in {old}" in message and f"{db.parent / 'mlruns'}" in message
    assert ("no longer exists" in message) == (how == "moved")
    assert "tracking.experiment=mnist-2" in message and "\n" not in message
    connect(tracking(f"sqlite:///{db}", "mnist-2"))  # the way out it names
    experiment = mlflow.get_experiment_by_name("mnist-2")
    assert experiment.artifact_location == (db.parent / "mlruns").as_uri()


def test_a_store_that_stayed_put_connects(first: Path) -> None:
    connect(tracking(f"sqlite:///{first / 'mlflow.db'}"))
