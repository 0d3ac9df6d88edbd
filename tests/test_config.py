"""Configuration: conf/ and params.yaml agree, every option composes, dvc.yaml names its code."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mnist_pipeline.config import compose, describe, flatten, to_yaml
from workspace import REPO

CONF = REPO / "conf"
PACKAGE = REPO / "src" / "mnist_pipeline"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_params_yaml_is_the_composition_of_conf() -> None:
    """`dvc repro` (reads params.yaml) and `dvc exp run` (composes conf/) must be the same run."""
    composed = to_yaml(compose(conf_dir=CONF))
    on_disk = (REPO / "params.yaml").read_text()
    assert yaml.safe_load(on_disk) == yaml.safe_load(composed), "run `make params`"
    assert on_disk == composed, "params.yaml is not formatted as DVC writes it: run `make params`"


@pytest.mark.parametrize("model", options("model"))
def test_every_model_builds_and_classifies(model: str) -> None:
    import torch

    net = instantiate(compose([f"model={model}"], conf_dir=CONF).model)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("optimizer", options("optimizer"))
@pytest.mark.parametrize("scheduler", options("scheduler"))
def test_every_optimizer_and_scheduler_instantiate(optimizer: str, scheduler: str) -> None:
    import torch

    cfg = compose([f"optimizer={optimizer}", f"scheduler={scheduler}"], conf_dir=CONF)
    opt = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    sched = instantiate(cfg.scheduler)(opt, total_steps=10)
    for _ in range(10):
        opt.step()
        sched.step()


@pytest.mark.parametrize("trainer", options("trainer"))
def test_every_trainer_config_is_lightning_trainer_arguments(trainer: str) -> None:
    import pytorch_lightning as pl

    cfg = compose([f"trainer={trainer}"], conf_dir=CONF).trainer
    if cfg.get("accelerator", "cpu") == "cpu":
        assert isinstance(instantiate(cfg, logger=False), pl.Trainer)


def test_overrides_reach_the_composition() -> None:
    cfg = compose(["model=mlp", "optimizer.lr=0.01", "trainer.max_epochs=2"], conf_dir=CONF)
    assert cfg.model._target_.endswith("MLP")
    assert cfg.optimizer.lr == 0.01
    assert cfg.scheduler.max_lr == 0.01  # interpolation resolved, as DVC resolves it
    assert cfg.trainer.max_epochs == 2


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


@pytest.mark.parametrize(
    ("override", "message"),
    [("optimizer.lrr=1", "optimizer.lrr"), ("model=nope", "model/nope")],
)
def test_bad_overrides_fail_with_hydras_message(override: str, message: str) -> None:
    with pytest.raises(ConfigCompositionException, match=message):
        compose([override], conf_dir=CONF)


def test_flatten_gives_dotted_keys() -> None:
    tree = {"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}
    assert flatten(tree) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}
    flat = flatten(OmegaConf.to_container(compose(conf_dir=CONF)))
    assert flat["optimizer.lr"] == 0.003
    assert flat["data.files.train_images.name"] == "train-images-idx3-ubyte"


def is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)


def package_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """The project modules `module` imports, transitively, at any depth of its code."""
    seen = set() if seen is None else seen
    seen.add(module)
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    tree.body = [node for node in tree.body if not is_main_guard(node)]  # CLI dispatch only
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module == "mnist_pipeline":
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_pipeline."):
            names = [node.module.split(".")[1]]
        for name in names:
            if (PACKAGE / f"{name}.py").exists() and name not in seen:
                package_imports(name, seen)
    return seen


def test_each_stage_depends_on_all_the_code_it_runs() -> None:
    """A module missing from a stage's deps lets `dvc repro` skip a stage whose code changed."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        words = shlex.split(stage["cmd"])
        module = words[words.index("-m") + 1].removeprefix("mnist_pipeline.")
        needed = {f"src/mnist_pipeline/{m}.py" for m in package_imports(module)}
        needed -= {
            "src/mnist_pipeline/cli.py",
            "src/mnist_pipeline/config.py",
            "src/mnist_pipeline/atomic.py",
        }  # plumbing that cannot change a result
        missing = needed - set(stage["deps"])
        assert not missing, f"stage {name} runs {sorted(missing)} but does not depend on them"


def test_stage_params_exist_in_params_yaml() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        for key in stage.get("params", []):
            node = params
            for part in key.split("."):
                assert part in node, f"stage {name} declares param {key}, absent from params.yaml"
                node = node[part]


def test_conf_files_document_themselves() -> None:
    """Every config file opens with a comment saying what it is."""
    for path in Path(CONF).rglob("*.yaml"):
        assert path.read_text().startswith("#"), f"{path.relative_to(REPO)} has no header comment"
