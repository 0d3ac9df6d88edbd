"""The stages' own checks and `python -m mnist_pipeline.check`: every bad value refused in one
paragraph, before any stage writes, any data is read or any MLflow run opens."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_pipeline import train
from mnist_pipeline.config.checks import ConfigError, check_all, check_training
from mnist_pipeline.config.params import compose, to_yaml
from mnist_pipeline.data import splits
from mnist_pipeline.utils.paths import Outputs
from synthetic import mirror_files, write_processed
from workspace import REPO, clean_env

CONF = REPO / "conf"


def stage(module: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"mnist_pipeline.{module}", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )


def one_paragraph(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr


@pytest.mark.parametrize(
    ("overrides", "messages"),
    [
        (["trainer.max_epochs=0", "data.val_size=0"], ["trainer.max_epochs=0", "data.val_size=0"]),
        (["data.batch_size=0"], ["data.batch_size=0 must be a positive int"]),
        (["model.dropout=1.5"], ["model: dropout probability has to be between 0 and 1"]),
        (["model.channels=[]"], ["model.padding lists 2 values for 0 convolutions"]),
        (["model.activation=sigmoid"], ["model.activation='sigmoid' is not one of"]),
        (["model.padding=[same]"], ["model.padding lists 1 values for 2 convolutions"]),
        (["seed=-1"], ["seed=-1 must be a non-negative int"]),
        (["model.stride=20"], ["model.stride=20 and model.pool_size=2 shrinks the feature map"]),
        (["optimizer.lr=-1"], ["optimizer.lr=-1 must be a positive float"]),
        (["model.kernel_size=0"], ["model.kernel_size=0 must be a whole number of pixels"]),
        (["scheduler.pct_start=2"], ["scheduler: Expected float between 0 and 1 pct_start"]),
        (["tracking.experiment=''"], ["tracking.experiment='' must be a non-empty name"]),
        (["data.val_size=abc"], ["data.val_size='abc' must be a whole number"]),
        (["data.attempts=0"], ["data.attempts=0 must be a positive int"]),
    ],
)
def test_check_all_refuses_every_bad_value_naming_each(
    overrides: list[str], messages: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        check_all(compose(overrides, conf_dir=CONF))
    text = str(info.value)
    assert "\n" not in text and text.startswith("params.yaml is refused: ")
    for message in messages:
        assert message in text


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="a GPU is there: trainer=gpu is fine"
)
def test_gpu_trainer_without_a_gpu_is_refused_with_lightnings_message(tmp_path: Path) -> None:
    """In the train stage's own check too, which runs before any MLflow run opens."""
    (tmp_path / "stats.json").write_text("{}")
    with pytest.raises(ConfigError, match="trainer: No supported gpu backend found"):
        check_training(compose(["trainer=gpu"], conf_dir=CONF), tmp_path)


def test_check_command_passes_the_default_config(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(to_yaml(compose(conf_dir=CONF)))
    result = stage("check", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "params.yaml passes every stage's checks" in result.stdout


def test_check_command_fails_in_one_paragraph_naming_every_problem(tmp_path: Path) -> None:
    """Numbers refused skip the model and Trainer builds (and Lightning's import): fast."""
    bad = compose(["seed=-1", "data.val_size=0"], conf_dir=CONF)
    (tmp_path / "params.yaml").write_text(to_yaml(bad))
    result = stage("check", tmp_path)
    one_paragraph(result, "data.val_size=0 must be a whole number")
    assert "seed=-1 must be a non-negative int" in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(("value", "shown"), [("abc", "'abc'"), ("4999.5", "4999.5")])
def test_preprocess_refuses_a_val_size_that_is_not_a_count(
    value: str, shown: str, tmp_path: Path
) -> None:
    (tmp_path / "params.yaml").write_text(
        to_yaml(compose([f"data.val_size={value}"], conf_dir=CONF))
    )
    (tmp_path / "data" / "raw").mkdir(parents=True)  # what download leaves
    for name, data in mirror_files().items():
        (tmp_path / "data" / "raw" / name.removesuffix(".gz")).write_bytes(gzip.decompress(data))
    one_paragraph(stage("preprocess", tmp_path), f"data.val_size={shown} must be a whole number")


def test_a_damaged_split_is_named_and_no_mlflow_run_opens(tmp_path: Path) -> None:
    data = write_processed(tmp_path / "processed")
    (data / "train.npz").write_bytes(b"\x80\x04garbage, not an archive")
    with pytest.raises(splits.DataError, match=r"train\.npz is not a processed split") as info:
        splits.load(data, "train")
    assert "pickled" not in str(info.value) and "dvc repro -f preprocess" in str(info.value)

    store = tmp_path / "mlflow.db"
    cfg = compose([f"tracking.uri=sqlite:///{store}"], conf_dir=CONF)
    with pytest.raises(splits.DataError):
        train.train(cfg, Outputs.under(tmp_path / "out"), data)
    assert not store.exists()  # the data was checked before the run (and its store) opened


def test_a_split_of_the_wrong_shape_is_named(tmp_path: Path) -> None:
    data = write_processed(tmp_path)
    np.savez(data / "val.npz", images=np.zeros((3, 28, 27), np.uint8), labels=np.zeros(3, int))
    with pytest.raises(splits.DataError, match=r"val\.npz holds images uint8 \(3, 28, 27\)"):
        splits.load(data, "val")


def test_train_stage_names_the_ad_hoc_command_for_overrides(capsys) -> None:
    """`python -m mnist_pipeline.train model=cnn`: the stage reads its params file only; its
    usage line names the command for ad-hoc runs."""
    with pytest.raises(SystemExit) as exit:
        train.arguments().parse_args(["model=cnn"])
    assert exit.value.code == 2
    usage, error = capsys.readouterr().err.strip().splitlines()[-2:]
    assert "python -m mnist_pipeline.adhoc key=value" in usage
    assert error.endswith("unrecognized arguments: model=cnn")


def test_tracking_experiment_must_be_named() -> None:
    cfg = compose(["tracking.experiment=''"], conf_dir=CONF)
    with pytest.raises(ConfigError, match=r"tracking\.experiment='' must be a non-empty name"):
        check_training(cfg, Path("."))
