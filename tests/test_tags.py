"""Run tags: a config read back as the Hydra overrides that compose it again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mnist_pipeline.config.params import compose
from mnist_pipeline.tracking.tags import describe
from workspace import REPO

CONF = REPO / "conf"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("overrides", "described"),
    [
        ([], []),
        (["model=cnn", "optimizer.lr=0.01"], ["model=cnn", "optimizer.lr=0.01"]),
        # closest to trainer=cpu, with keys that cpu lacks: they are added, not set
        (["trainer=gpu", "trainer.precision=32-true", "trainer.benchmark=false"], None),
        (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"], None),
    ],
)
def test_describe_reads_back_overrides_that_compose_the_same_config(
    overrides: list[str], described: list[str] | None, cache: Path
) -> None:
    """What MLflow tags a run with (DVC hands the stage only params.yaml) is a Hydra command line
    that rebuilds its config; the same with the compositions kept from a first reading."""
    cfg = compose(overrides, conf_dir=CONF)
    read_back = describe(cfg, CONF)["overrides"]
    assert list(cache.rglob("*.json")), "no composition kept"
    assert describe(cfg, CONF)["overrides"] == read_back
    if described is not None:
        assert read_back == described
    again = compose(read_back, conf_dir=CONF)
    assert OmegaConf.to_container(again, resolve=True) == OmegaConf.to_container(cfg, resolve=True)


def test_kept_compositions_follow_conf_and_hold_no_value_of_the_run(
    tmp_path: Path, cache: Path
) -> None:
    """An edit to conf/ is read, not an old composition; a token in an override never lands on
    disk."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    token = ["tracking.uri=http://alice:s3cr3t@127.0.0.1:5000", "optimizer=sgd"]
    assert describe(compose(token, conf_dir=conf), conf)["overrides"] == [
        "optimizer=sgd", "tracking.uri=http://alice:s3cr3t@127.0.0.1:5000"
    ]  # fmt: skip
    assert not any("s3cr3t" in kept.read_text() for kept in cache.rglob("*.json"))
    sgd = conf / "optimizer" / "sgd.yaml"
    sgd.write_text(sgd.read_text().replace("momentum: 0.9", "momentum: 0.8"))
    cfg = compose(["optimizer=sgd"], conf_dir=conf)
    assert describe(cfg, conf)["overrides"] == ["optimizer=sgd"]
