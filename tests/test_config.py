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

from mnist_pipeline.config.params import compose, flatten, to_yaml
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
    """GPU options too: Lightning checks every argument when the Trainer is built, so a GPU config
    built on the CPU (its accelerator and device count swapped, nothing else) is checked whole."""
    import pytorch_lightning as pl

    cfg = compose([f"trainer={trainer}"], conf_dir=CONF).trainer
    on_cpu = {"accelerator": "cpu", "devices": 2 if cfg.get("strategy") == "ddp" else 1}
    built = instantiate(cfg, logger=False, **on_cpu)
    assert isinstance(built, pl.Trainer)
    assert built.max_epochs == cfg.max_epochs
    if trainer in ("gpu", "ddp"):
        assert cfg.accelerator == "gpu" and built.precision == cfg.precision == "bf16-mixed"
    if trainer == "ddp":
        assert type(built.strategy).__name__ == "DDPStrategy" and built.world_size == 2


def test_overrides_reach_the_composition() -> None:
    import torch

    cfg = compose(["model=mlp", "optimizer.lr=0.01", "trainer.max_epochs=2"], conf_dir=CONF)
    assert cfg.model._target_.endswith("MLP")
    assert cfg.optimizer.lr == 0.01
    opt = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    instantiate(cfg.scheduler)(opt, total_steps=10)
    assert opt.param_groups[0]["max_lr"] == 0.01  # the schedule peaks at the overridden rate
    assert cfg.trainer.max_epochs == 2


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


def module_file(module: str) -> Path | None:
    """`mnist_pipeline.data.splits` → its file, if it names one of the package's modules."""
    path = REPO / "src" / Path(*module.split("."))
    return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file()), None)


def package_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """The package modules `module` imports, transitively, at any depth of its code."""
    seen = set() if seen is None else seen
    seen.add(module)
    tree = ast.parse(module_file(module).read_text())
    tree.body = [node for node in tree.body if not is_main_guard(node)]  # CLI dispatch only
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mnist_pipeline"):
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name.startswith("mnist_pipeline") and module_file(name) and name not in seen:
                package_imports(name, seen)
    return seen


# Plumbing that cannot change a result, and package docstrings (checked below): not stage deps.
PLUMBING = {
    "mnist_pipeline.runtime.command",
    "mnist_pipeline.runtime.logs",
    "mnist_pipeline.runtime.privacy",
    "mnist_pipeline.runtime.workspace",
    "mnist_pipeline.config.params",
    "mnist_pipeline.utils.atomic",
    "mnist_pipeline.utils.redact",
    "mnist_pipeline.utils.errors",
}


def test_each_stage_depends_on_all_the_code_it_runs() -> None:
    """A module missing from a stage's deps lets `dvc repro` skip a stage whose code changed."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        words = shlex.split(stage["cmd"])
        if words[0] == "mkdir":  # `yours`: makes sure a folder exists, runs no code of ours
            continue
        # The workspace's own code (runtime.workspace.check_workspace_code), in an ordinary process.
        assert words[:3] == ["PYTHONPATH=src", "python", "-m"], f"stage {name}: {words}"
        modules = package_imports(words[3]) - PLUMBING
        needed = {
            module_file(m).relative_to(REPO).as_posix()
            for m in modules
            if module_file(m).name != "__init__.py"
        }
        deps = set(stage["deps"])  # a folder covers every file in it
        missing = {f for f in needed if not deps & {f, *map(str, Path(f).parents)}}
        assert not missing, f"stage {name} runs {sorted(missing)} but does not depend on them"


def test_package_init_files_hold_no_code() -> None:
    """What lets the test above leave `__init__.py` files out of the stages' deps."""
    for path in PACKAGE.rglob("__init__.py"):
        body = ast.parse(path.read_text()).body
        code = [n for n in body[1:] if "__version__" not in ast.unparse(n)]
        assert isinstance(body[0], ast.Expr) and not code, f"{path} holds code"


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
