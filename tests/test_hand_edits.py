"""params.yaml edited by hand, or rewritten under a running stage: the edit takes effect
everywhere, is not silently dropped by `dvc exp run`, and a stage never records params it did not
use."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mnist_pipeline.config.checks import ConfigError
from mnist_pipeline.config.guard import ParamsChanged, check_baseline
from mnist_pipeline.config.params import compose, flatten, to_yaml
from synthetic import write_processed
from workspace import REPO, clean_env, commit

CONF = REPO / "conf"


def test_a_hand_edited_learning_rate_reaches_the_schedule() -> None:
    """params.yaml holds no value derived from another: the edit is the rate trained with."""
    import torch

    cfg = OmegaConf.load(REPO / "params.yaml")
    cfg.optimizer.lr = 0.05  # the one line a hand edit changes
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    instantiate(cfg.scheduler)(optimizer, total_steps=10)
    assert optimizer.param_groups[0]["max_lr"] == 0.05


@pytest.mark.parametrize("scheduler", sorted(p.stem for p in (CONF / "scheduler").glob("*.yaml")))
def test_no_config_value_is_derived_from_another(scheduler: str) -> None:
    """Changing one value changes only that key of the composition, in every option."""
    base = flatten(OmegaConf.to_container(compose([f"scheduler={scheduler}"], conf_dir=CONF)))
    for key in ("optimizer.lr", "seed", "data.batch_size", "trainer.max_epochs"):
        changed = flatten(
            OmegaConf.to_container(compose([f"scheduler={scheduler}", f"{key}=7"], conf_dir=CONF))
        )
        assert {k for k in base if base[k] != changed[k]} == {key}


@pytest.fixture
def baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repo holding conf/ and the params.yaml composed from it."""
    shutil.copytree(CONF, tmp_path / "conf")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    commit(tmp_path, clean_env(), "baseline")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", "test-exp")
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    return tmp_path


def test_exp_run_refuses_a_baseline_whose_hand_edits_it_would_drop(baseline: Path) -> None:
    check_baseline()  # params.yaml is conf/'s composition: nothing to drop
    params = baseline / "params.yaml"
    params.write_text(params.read_text().replace("  lr: 0.003\n", "  lr: 0.05\n"))
    commit(baseline, clean_env(), "hand edit")
    params.write_text(to_yaml(compose(["seed=1"], conf_dir=CONF)))  # what `dvc exp run` writes
    with pytest.raises(ConfigError) as info:
        check_baseline()
    text = str(info.value)
    assert "optimizer.lr is 0.05 there, conf/ gives 0.003" in text
    assert "`-S key=value`" in text and "make params" in text and "\n" not in text

    params.write_text(to_yaml(compose(["optimizer.lr=0.01"], conf_dir=CONF)))
    check_baseline()  # the experiment sets the key itself: the user's choice, nothing dropped


@pytest.mark.slow  # a stage in a subprocess: imports torch and more
def test_params_rewritten_while_training_stops_the_stage_before_it_saves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a second `dvc exp run` in the same workspace does to a running one: the train stage
    runs here in-process (no second import of Lightning and MLflow), params.yaml rewritten from
    another thread once the first epoch's checkpoint is on disk."""
    from mnist_pipeline import train

    write_processed(tmp_path / "data" / "processed")
    shutil.copytree(CONF, tmp_path / "conf")  # the run's tags read the choices from conf/
    overrides = ["trainer.max_epochs=8", "trainer.enable_progress_bar=false"]  # 2 steps each
    overrides.append(f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}")
    params = tmp_path / "params.yaml"
    params.write_text(to_yaml(compose(overrides, conf_dir=CONF)))
    monkeypatch.chdir(tmp_path)

    def rewrite_after_first_epoch() -> None:
        checkpoint = tmp_path / ".checkpoints" / "train" / "last.ckpt"
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        rewritten = yaml.safe_load(params.read_text()) | {"seed": 7}
        params.write_text(yaml.safe_dump(rewritten))  # the other experiment's params

    other = threading.Thread(target=rewrite_after_first_epoch, daemon=True)
    other.start()
    with pytest.raises(ParamsChanged) as info:
        train.stage(Path("params.yaml"))
    other.join()
    text = str(info.value)
    assert text.startswith("params.yaml changed while this stage ran") and "\n" not in text
    assert "`dvc exp run --queue -S ...` then `dvc queue start -j N`" in text
    assert not (tmp_path / "models" / "model.pt").exists()
