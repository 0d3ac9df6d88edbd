"""Quiet and private by default: no DVC analytics or MLflow telemetry unless a user turns them on,
no library noise from a stage, and -q / -v (or LOG_LEVEL) for less or more.

Every process here runs in a user's environment: without the settings CI and the other tests add
(DVC_NO_ANALYTICS, MLFLOW_DISABLE_TELEMETRY) and without the variables MLflow takes as a sign of
CI or testing, so what is off is off because of the project's own files.
"""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mnist_pipeline.config.params import compose
from synthetic import checksum_overrides, mirror_files, write_processed
from workspace import REPO, clean_env, copy_repo

# What mlflow/telemetry/utils.py reads as CI or a test run (telemetry off whatever the project
# does), and the opt-out a user may have set: none of them may hide a telemetry left on.
NOT_A_USER = (
    "PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "CIRCLECI", "GITLAB_CI", "JENKINS_URL",
    "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE",
    "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME",
    "RUNBOT_WORKER_ID", "DO_NOT_TRACK", "DVC_NO_ANALYTICS", "MLFLOW_DISABLE_TELEMETRY", "LOG_LEVEL",
)  # fmt: skip
LIGHTNING_NOISE = ["GPU available", "TPU available", "💡 Tip", "litlogger", "LeafSpec"]


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's terminal: the venv on PATH, MLflow's files under `home`, no CI, no opt-outs."""
    env = clean_env(XDG_CONFIG_HOME=str(home), **extra)
    for name in NOT_A_USER:
        if name not in extra:
            env.pop(name, None)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_dvc_analytics_and_update_checks_are_off_in_a_clone(tmp_path: Path) -> None:
    """.dvc/config, as a clone has it, turns both off: `dvc config` reads them back as false,
    and DVC's own switches (what `dvc` consults before sending anything) say disabled."""
    clone = copy_repo(tmp_path / "clone")
    env = user_env(tmp_path)
    for key in ("core.analytics", "core.check_update"):
        result = run(["dvc", "config", key], clone, env)
        assert (result.returncode, result.stdout.strip()) == (0, "false"), result.stderr
    probe = (
        "from dvc.analytics import is_enabled; from dvc.updater import Updater;"
        "print(is_enabled(), Updater.is_enabled(None))"
    )
    result = run([sys.executable, "-c", probe], clone, env)
    assert result.stdout.split() == ["False", "False"], result.stderr


# Runs a stage module as `python -m` does and, once it is done, reports MLflow's telemetry state.
TELEMETRY_PROBE = """
import json, os, runpy, sys

def report():
    from mlflow.environment_variables import MLFLOW_DISABLE_TELEMETRY
    from mlflow.telemetry import get_telemetry_client
    from mlflow.telemetry.utils import _is_ci_env_or_testing, is_telemetry_disabled

    with open(os.environ["PROBE_REPORT"], "w") as f:
        json.dump({
            "looks_like_ci": _is_ci_env_or_testing(),
            "setting": MLFLOW_DISABLE_TELEMETRY.get(),
            "disabled": is_telemetry_disabled(),
            "client": repr(get_telemetry_client()),
        }, f)

sys.argv = sys.argv[1:]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
finally:
    report()
"""


@pytest.mark.parametrize(
    "stage",
    [
        # imports no mlflow (here: the probe, after it turned telemetry off)
        "mnist_pipeline.download",
        # imports mlflow before telemetry is turned off: its client exists, and is dropped
        "mnist_pipeline.evaluate",
        # an ad-hoc run: off before Hydra starts (a sweep opens its parent run before any job)
        "mnist_pipeline.adhoc",
    ],
)
@pytest.mark.slow  # a stage in a subprocess: imports torch and more
def test_stages_run_with_mlflow_telemetry_off(stage: str, tmp_path: Path) -> None:
    """In a stage's own process, started without any opt-out, MLflow's telemetry is off and it
    holds no telemetry client. (The stages stop early here, finding no params.yaml.)"""
    report = tmp_path / "report.json"
    env = user_env(tmp_path, PROBE_REPORT=str(report))
    run([sys.executable, "-c", TELEMETRY_PROBE, stage], tmp_path, env)
    state = json.loads(report.read_text())
    assert not state["looks_like_ci"], state
    assert (state["setting"], state["disabled"], state["client"]) == (True, True, "None"), state


def test_verbosity_flags_beside_a_commands_own_arguments(monkeypatch) -> None:
    """-v/-q anywhere among a command's arguments; the last one given wins, then $LOG_LEVEL."""
    import argparse

    from mnist_pipeline.runtime.logs import add_verbosity, log_level

    parser = argparse.ArgumentParser()
    parser.add_argument("--params")
    add_verbosity(parser)
    args = parser.parse_args(["-v", "--params", "params.yaml", "-q"])
    assert (log_level(args.verbosity), args.params) == (logging.WARNING, "params.yaml")
    assert log_level(parser.parse_args(["--verbose"]).verbosity) == logging.DEBUG
    monkeypatch.setenv("LOG_LEVEL", "warning")
    assert log_level(parser.parse_args([]).verbosity) == logging.WARNING


@pytest.fixture(scope="module")
def raw_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tiny synthetic MNIST in data/raw and its params.yaml: a stage's cwd."""
    root = tmp_path_factory.mktemp("stage")
    (root / "data" / "raw").mkdir(parents=True)
    files = mirror_files()
    for name, data in files.items():
        (root / "data" / "raw" / name.removesuffix(".gz")).write_bytes(gzip.decompress(data))
    cfg = compose([*checksum_overrides(files), "data.val_size=100"], conf_dir=REPO / "conf")
    OmegaConf.save(cfg, root / "params.yaml")
    return root


def preprocess(root: Path, *flags: str, **env: str) -> str:
    result = run(
        [sys.executable, "-m", "mnist_pipeline.preprocess", *flags], root, user_env(root, **env)
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_quiet_and_verbose_stages(raw_data: Path) -> None:
    """`-q` (or LOG_LEVEL=WARNING) prints nothing when all goes well, the default the stage's
    own lines, and `-v` (or LOG_LEVEL=DEBUG) those and more."""
    quiet = preprocess(raw_data, "-q")
    default = preprocess(raw_data)
    verbose = preprocess(raw_data, "-v")
    assert quiet == ""
    assert "examples per split" in default and "DEBUG" not in default
    assert "examples per split" in verbose and "DEBUG mnist_pipeline" in verbose
    assert len(quiet) < len(default) < len(verbose)
    assert preprocess(raw_data, LOG_LEVEL="WARNING") == quiet
    assert "DEBUG mnist_pipeline" in preprocess(raw_data, LOG_LEVEL="DEBUG")


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small processed dataset as preprocess writes it, and a 1-epoch MLP config beside it."""
    folder = write_processed(tmp_path_factory.mktemp("processed"))
    overrides = ["model=mlp", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
    OmegaConf.save(compose(overrides, conf_dir=REPO / "conf"), folder / "params.yaml")
    return folder


# A real training run the way the train stage runs it: the stage's cli, then Lightning's Trainer.
TRAINING = """
import sys
from pathlib import Path

from mnist_pipeline.runtime.command import run_stage
from mnist_pipeline.config.params import load_params
from mnist_pipeline.training.build import build

def main():
    fit = build(load_params("params.yaml"), Path("."), [])
    fit.trainer.fit(fit.module, datamodule=fit.datamodule)
    print("trained", fit.trainer.current_epoch, "epoch")

run_stage(main)
"""


@pytest.mark.slow  # a stage in a subprocess: imports torch and more
def test_lightning_tips_and_deprecations_stay_out_of_the_terminal(processed: Path) -> None:
    """A training prints none of Lightning's tips, device lines or deprecation notices (`-v`
    shows them)."""
    result = run([sys.executable, "-c", TRAINING], processed, user_env(processed))
    assert result.returncode == 0, result.stderr
    assert "trained 1 epoch" in result.stdout
    assert [line for line in LIGHTNING_NOISE if line in result.stderr] == [], result.stderr
