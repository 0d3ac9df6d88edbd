"""The model registry: each trained model a version of `mnist-classifier` (alias `candidate`), and
the champion rule (`champion` is the version with the best test accuracy, even with several
writers at once)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import PIL
import torch
from mlflow.entities import ViewType
from mlflow.models import ModelSignature, infer_signature

import mnist_pipeline
from mnist_pipeline.model import model_file

REGISTERED_MODEL = "mnist-classifier"
# Read by MLflow as a file, not imported: importing it would call `mlflow.models.set_model`.
SERVED_MODEL = Path(__file__).parents[1] / "serving" / "served_model.py"


def log_model(weights: Path, example: np.ndarray) -> None:
    """Log the model file as an MLflow pyfunc model (raw 28x28 pixels in, logits out; or image
    files in, digits out) and register it as a new version of `mnist-classifier` with the alias
    `candidate`.

    The signature declares only the output: an input schema would make MLflow refuse one of the
    two kinds of input before the model sees it; `served_model.py` checks both itself.

    Logged "from code" (`served_model.py`), with the weights file as an artifact and the package's
    source alongside, so loading it unpickles nothing and works without the package installed;
    `mlflow.pytorch` would store a pickled `nn.Module`, which runs code when loaded.
    """
    served = model_file.load_served(weights)
    with torch.inference_mode():
        output = served(torch.from_numpy(example)).numpy()
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(SERVED_MODEL),
        artifacts={"weights": str(weights)},  # the name served_model.py reads
        code_paths=[str(Path(mnist_pipeline.__file__).parent)],
        signature=ModelSignature(outputs=infer_signature(example, output).outputs),
        input_example=example,
        pip_requirements=[
            f"torch=={torch.__version__.split('+')[0]}",
            f"numpy=={np.__version__}",
            f"pillow=={PIL.__version__}",
        ],
    )
    version = mlflow.register_model(info.model_uri, REGISTERED_MODEL)
    mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, "candidate", version.version)


def promote_if_better(run_id: str, test_acc: float) -> bool:
    """Point `champion` at the version with the best test accuracy of all (the earliest of
    equals); return whether that is this run's model.

    Safe with several writers on one store (two `dvc queue` workers, a cluster's jobs), SQLite or
    server alike. MLflow has no compare-and-set for aliases, so "read the champion, compare, move
    it" lets two writers both read the old champion and the worse one move it last. Instead each
    writer moves the alias to the best version it sees, then reads back until the alias is the
    best it sees: whoever moves the alias last reads back after every earlier result was logged,
    and a result logged later is its writer's to check, so the alias ends on the best.
    """
    client = mlflow.MlflowClient()
    mine = versions_of(client, run_id)
    if not mine:
        return False
    for attempt in range(SETTLE_ATTEMPTS):
        best = best_version(client, {run_id: test_acc})
        if best is None or champion_version(client) == best:
            break
        time.sleep(float(os.environ.get(PAUSE_ENV) or 0))
        try:
            client.set_registered_model_alias(REGISTERED_MODEL, "champion", best)
        except mlflow.exceptions.MlflowException:
            # Two writers setting the alias at the same moment: MLflow's SQL store inserts it
            # without a lock and refuses the second (UNIQUE constraint). Read again and retry.
            if attempt == SETTLE_ATTEMPTS - 1:
                raise
    return best in mine


def promote_for_yours(
    run_id: str, test_acc: float, yours_acc: float, champion_on_yours: Callable[[str], float]
) -> bool:
    """With your own digits: `champion` moves to this run's model when it is right on more of
    your held-out digits than the champion (`champion_on_yours(version)`, on the same digits),
    or on as many and better on MNIST test, and at most `MNIST_SLACK` below it on MNIST test.
    Return whether it moved.

    A plain read-compare-move: unlike `promote_if_better`, two writers finishing at once may
    both move the alias (the later one wins)."""
    client = mlflow.MlflowClient()
    mine = versions_of(client, run_id)
    if not mine:
        return False
    champion = champion_version(client)
    if champion is not None:
        their_run = client.get_model_version(REGISTERED_MODEL, champion).run_id
        their_test = test_accuracies(client, {their_run}).get(their_run, 0.0)
        theirs = champion_on_yours(champion)
        better = yours_acc > theirs or (yours_acc == theirs and test_acc > their_test)
        if not better or test_acc < their_test - MNIST_SLACK:
            return False
    client.set_registered_model_alias(REGISTERED_MODEL, "champion", max(mine, key=int))
    return True


MNIST_SLACK = 0.001  # 0.1 point of MNIST test accuracy, traded at most for your own digits
MODELS = f"models:/{REGISTERED_MODEL}"  # a version: f"{MODELS}/3"
SETTLE_ATTEMPTS = 10  # each retry means another writer moved the alias meanwhile
# Seconds between choosing the champion and moving the alias: tests widen the race with it.
PAUSE_ENV = "MNIST_CHAMPION_PAUSE_S"


def versions_of(client: mlflow.MlflowClient, run_id: str) -> set[str]:
    """The registered versions of the model a run logged."""
    found = client.search_model_versions(f"name='{REGISTERED_MODEL}' and run_id='{run_id}'")
    return {v.version for v in found}


def champion_version(client: mlflow.MlflowClient) -> str | None:
    try:
        return client.get_model_version_by_alias(REGISTERED_MODEL, "champion").version
    except mlflow.exceptions.MlflowException:  # no champion yet
        return None


def best_version(client: mlflow.MlflowClient, known: dict[str, float]) -> str | None:
    """The version whose run logged the highest `test_acc` (`known` overrides what is logged),
    the lowest version number among equals; None if no version's run has one."""
    versions, token = [], None
    while True:
        page = client.search_model_versions(f"name='{REGISTERED_MODEL}'", page_token=token)
        versions += page
        token = page.token
        if not token:
            break
    scores = test_accuracies(client, {v.run_id for v in versions if v.run_id}) | known
    scored = [
        (scores[v.run_id], -int(v.version), v.version) for v in versions if v.run_id in scores
    ]
    return max(scored)[2] if scored else None


def test_accuracies(client: mlflow.MlflowClient, run_ids: set[str]) -> dict[str, float]:
    """Each run's logged `test_acc`, from a search per 100 runs, not a call per run (each call to
    a tracking server is a round trip)."""
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    ids, found = sorted(run_ids), {}
    for start in range(0, len(ids), 100):
        chunk = ", ".join(f"'{i}'" for i in ids[start : start + 100])
        runs = client.search_runs(
            experiments, f"attributes.run_id IN ({chunk})", ViewType.ALL, max_results=100
        )
        found |= {
            r.info.run_id: r.data.metrics["test_acc"] for r in runs if "test_acc" in r.data.metrics
        }
    return found
