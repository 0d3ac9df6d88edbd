"""The registered model: logged from the project's code plus a weights file, never a pickle, and
loaded by `mlflow.pyfunc.load_model` to the same logits as the network itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import mlflow
import mlflow.pyfunc
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from mnist_pipeline.model import model_file
from mnist_pipeline.model.networks import ConvNet, Standardise
from mnist_pipeline.tracking import registry
from synthetic import synthetic_digits
from workspace import REPO, clean_env

pytestmark = pytest.mark.slow  # a model trained, logged and registered in a real store first

NORM = {"mean": 0.13, "std": 0.31}


class Registered(NamedTuple):
    served: nn.Module  # the network behind `Standardise`, as serving should compute
    weights: Path  # its model file, as train writes models/model.pt
    run_id: str


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registered]:
    """A network saved as train saves it, logged and registered in a fresh SQLite store, then
    made champion (once for the module: logging a model takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("store")
    with champion_in(tmp_path, tmp_path / "mlflow.db") as registered:
        yield registered


@contextmanager
def champion_in(tmp_path: Path, db: Path) -> Iterator[Registered]:
    """MLflow pointed at the SQLite store `db`, artifacts under `tmp_path`, and a network
    registered there as champion; MLflow let go of the store afterwards."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns: not the repo's
        mlflow.set_tracking_uri(f"sqlite:///{db}")
        mlflow.create_experiment("mnist", artifact_location=(tmp_path / "mlruns").as_uri())
        mlflow.set_experiment("mnist")
        yield register(tmp_path)
        mlflow.set_tracking_uri(None)


def register(tmp_path: Path) -> Registered:
    torch.manual_seed(0)
    network = ConvNet().eval()
    weights = tmp_path / "models" / "model.pt"
    model_file.save(weights, network, {"_target_": "mnist_pipeline.model.networks.ConvNet"}, NORM)
    example = synthetic_digits(5, seed=3)[0].astype(np.float32)
    with mlflow.start_run() as run:
        registry.log_model(weights, example)
    assert registry.promote_if_better(run.info.run_id, 0.5)
    served = nn.Sequential(Standardise(NORM["mean"], NORM["std"]), network).eval()
    return Registered(served, weights, run.info.run_id)


def download(tmp_path: Path, alias: str = "champion") -> Path:
    """The registered model's files, as whoever loads `@<alias>` gets them."""
    return Path(
        mlflow.artifacts.download_artifacts(
            f"models:/{registry.REGISTERED_MODEL}@{alias}", dst_path=str(tmp_path / "dl")
        )
    )


def test_the_champion_gives_the_networks_own_logits(registered: Registered) -> None:
    served, _, run_id = registered
    client = mlflow.MlflowClient()
    candidate = client.get_model_version_by_alias(registry.REGISTERED_MODEL, "candidate")
    assert candidate.run_id == run_id
    model = mlflow.pyfunc.load_model(f"models:/{registry.REGISTERED_MODEL}@champion")
    images = synthetic_digits(20, seed=4)[0].astype(np.float32)
    logits = model.predict(images)
    with torch.inference_mode():
        expected = served(torch.from_numpy(images)).numpy()
    assert logits.shape == (20, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
    # No input schema: MLflow would refuse one of the two kinds of input (pixels, image files)
    # before the model sees it; served_model.py checks both itself. The output is declared.
    assert model.metadata.get_input_schema() is None
    assert model.metadata.signature.outputs.inputs[0].shape == (-1, 10)


def test_the_logged_model_holds_code_and_weights_not_a_pickle(
    registered: Registered, tmp_path: Path
) -> None:
    _, weights, _ = registered
    local = download(tmp_path, "candidate")
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert set(mlmodel["flavors"]) == {"python_function"}  # no `pytorch` flavor
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    assert "python_model" not in pyfunc  # the cloudpickled PythonModel of non-code logging
    assert (local / "served_model.py").read_text() == registry.SERVED_MODEL.read_text()
    assert (local / "code" / "mnist_pipeline" / "model" / "model_file.py").is_file()
    files = [p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()]
    pickles = [f for f in files if f.endswith((".pth", ".pkl", ".pickle")) or f == "data/model.pth"]
    assert not pickles, pickles
    (artifact,) = (local / "artifacts").iterdir()
    assert artifact.read_bytes() == weights.read_bytes()  # the model file, byte for byte
    assert (local / "input_example.json").is_file()
    assert any(r.startswith("torch==") for r in (local / "requirements.txt").read_text().split())


def test_loading_reads_the_weights_only_through_weights_only(
    registered: Registered, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load = torch.load
    calls: list[object] = []

    def recording_load(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    mlflow.pyfunc.load_model(f"models:/{registry.REGISTERED_MODEL}@champion")
    assert calls and all(flag is True for flag in calls), calls


def test_a_crafted_weights_file_in_the_registry_is_refused(
    registered: Registered, tmp_path: Path
) -> None:
    """Whoever can write to the store gets no code run by swapping the weights file."""
    local = download(tmp_path)
    marker = tmp_path / "touched"
    touch = {"_target_": "pathlib.Path.touch", "_args_": [{"_target_": "pathlib.Path",
             "_args_": [str(marker)]}]}  # fmt: skip
    (artifact,) = (local / "artifacts").iterdir()
    crafted = {"_target_": "mnist_pipeline.model.networks.ConvNet", "hidden": [120, touch]}
    torch.save({"model": crafted, "state_dict": {}, "normalisation": NORM}, artifact)
    with pytest.raises(model_file.CheckpointError, match=r"model\.hidden=.*pathlib\.Path\.touch"):
        mlflow.pyfunc.load_model(str(local))
    assert not marker.exists()


def test_the_model_loads_without_the_package_installed(
    registered: Registered, tmp_path: Path
) -> None:
    """The artifact carries the package's source: a Python that cannot import it still loads."""
    local = download(tmp_path)
    shutil.move(local, tmp_path / "moved")
    script = (
        "import sys, numpy as np, mlflow.pyfunc\n"
        "sys.path = [p for p in sys.path if 'src' not in p.split('/')]\n"
        "sys.modules.pop('mnist_pipeline', None)\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "print(model.predict(np.zeros((2, 28, 28), np.float32)).shape)\n"
        "print(sys.modules['mnist_pipeline'].__file__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "moved")],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    shape, package = result.stdout.strip().splitlines()[-2:]
    assert shape == "(2, 10)" and package.startswith(str(tmp_path / "moved" / "code"))


def test_evaluate_does_not_import_lightning() -> None:
    """`mlflow.pytorch` imports Lightning; the pyfunc registry code must not pull it in."""
    script = (
        "import sys, mnist_pipeline.evaluate\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'pytorch_lightning'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=clean_env(),
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == "[]"
