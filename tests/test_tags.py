"""Run tags: a config read back as the Hydra overrides that compose it again."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from mnist_pipeline.config import compose
from mnist_pipeline.tracking.tags import describe
from workspace import REPO

CONF = REPO / "conf"


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
    overrides: list[str], described: list[str] | None
) -> None:
    """What MLflow tags a run with (DVC hands the stage only params.yaml) is a Hydra command line
    that rebuilds its config."""
    cfg = compose(overrides, conf_dir=CONF)
    read_back = describe(cfg, CONF)["overrides"]
    if described is not None:
        assert read_back == described
    again = compose(read_back, conf_dir=CONF)
    assert OmegaConf.to_container(again, resolve=True) == OmegaConf.to_container(cfg, resolve=True)
