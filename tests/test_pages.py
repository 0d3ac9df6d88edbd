"""The pages a user opens, rendered by a real headless Chromium with no network: `dvc plots show`'s
HTML, and the MLflow UI (`make ui`) over a real `mlflow server`."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import mlflow
import pytest
from dvc_render.html import PAGE_HTML
from omegaconf import OmegaConf

from browser import needs_chromium, render
from mnist_pipeline.tracking.store import HTTP_LIMITS, connect
from servers import free_port, start_mlflow_server, stop_mlflow_server
from workspace import clean_env, copy_repo

pytestmark = needs_chromium

PLOT_TITLES = ["Loss per epoch", "Validation accuracy per epoch", "Confusion matrix (test set)"]


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of the project with tiny training curves and test predictions in reports/."""
    root = copy_repo(tmp_path_factory.mktemp("plots"))
    (root / "reports" / "training.csv").write_text(
        "epoch,train_loss,val_loss,val_acc\n0,1.2,1.0,0.61\n1,0.6,0.5,0.82\n2,0.3,0.35,0.9\n"
    )
    (root / "reports" / "confusion.csv").write_text("actual,predicted\n0,0\n1,1\n1,7\n7,7\n")
    return root


def plots_page(root: Path, out: Path, *args: str) -> Path:
    subprocess.run(
        ["dvc", "plots", "show", "-o", str(out), *args],
        cwd=root, env=clean_env(), check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return out / "index.html"


def rendered_plots(dom: str) -> list[str]:
    """The titles of the plots vega drew (as SVG) in the page."""
    charts = re.findall(r'<svg[^>]*class="marks".*?</svg>', dom, flags=re.DOTALL)
    return [t for chart in charts for t in re.findall(r"<text[^>]*>([^<]+)</text>", chart)]


def test_dvc_plots_render_offline(plots_repo: Path, tmp_path: Path) -> None:
    """`dvc plots show` (the project's template, from .dvc/config) gives a page that draws every
    plot with no network: vega, vega-lite and vega-embed are in the page itself."""
    page = plots_page(plots_repo, tmp_path / "dvc_plots")
    assert not re.search(r"<script[^>]*\bsrc=", page.read_text()), "the page loads a script"
    titles = rendered_plots(render(page.as_uri(), tmp_path, screenshot="plots.png"))
    assert all(title in titles for title in PLOT_TITLES), titles


def test_dvc_default_plots_page_is_blank_offline(plots_repo: Path, tmp_path: Path) -> None:
    """What the project's template fixes, and the proof that the check above can tell: DVC's own
    page loads its libraries from a CDN, and without the network it draws nothing."""
    default = tmp_path / "dvc_default.html"
    default.write_text(PAGE_HTML)
    page = plots_page(plots_repo, tmp_path / "dvc_plots", "--html-template", str(default))
    assert "cdn.jsdelivr.net" in page.read_text()
    assert rendered_plots(render(page.as_uri(), tmp_path)) == []


class Store(NamedTuple):
    uri: str
    experiment_id: str
    run_name: str


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A real `mlflow server` holding one training run, made through the project's `connect`."""
    folder = tmp_path_factory.mktemp("mlflow-ui")
    port = free_port()
    server = start_mlflow_server(folder, port)
    uri = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as mp:  # what connect and set_experiment set, undone
        for name in [*HTTP_LIMITS, "MLFLOW_EXPERIMENT_ID"]:
            mp.delenv(name, raising=False)
        mp.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
        previous = mlflow.get_tracking_uri()
        try:
            connect(OmegaConf.create({"uri": uri, "experiment": "mnist"}))
            with mlflow.start_run(run_name="lenet5-ui-check") as run:
                mlflow.log_metrics({"val_acc": 0.9, "train_loss": 0.3})
            yield Store(uri, run.info.experiment_id, "lenet5-ui-check")
        finally:
            mlflow.set_tracking_uri(previous)
            stop_mlflow_server(server)


def shows_training_runs(dom: str, run_name: str) -> bool:
    """The experiment's runs table with the run in it, not GenAI's overview of (no) traces."""
    return run_name in dom and "matching run" in dom and "No data available" not in dom


@pytest.mark.slow
def test_connect_marks_the_experiment_as_model_training(store: Store) -> None:
    """What the MLflow UI reads as the experiment's kind, and offers as 'Machine learning'."""
    tags = mlflow.MlflowClient(store.uri).get_experiment(store.experiment_id).tags
    assert tags.get("mlflow.experimentKind") == "custom_model_development"


@pytest.mark.slow
def test_mlflow_ui_link_shows_the_training_runs(store: Store, tmp_path: Path) -> None:
    """The experiment's page as docs/tracking.md gives it (in the UI's "Model training" view)."""
    url = f"{store.uri}/#/experiments/{store.experiment_id}?workflowType=machine_learning"
    dom = render(url, tmp_path, screenshot="mlflow_ui.png")
    assert shows_training_runs(dom, store.run_name), dom[-3000:]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="MLflow 3.17's UI opens every experiment in the view its GenAI / Model training switch "
    "holds (GenAI until a user picks the other), whatever the experiment's kind tag. If this "
    "passes, MLflow follows the tag: drop the ?workflowType= advice from docs/tracking.md.",
)
def test_mlflow_ui_opens_the_experiment_on_its_runs(store: Store, tmp_path: Path) -> None:
    dom = render(f"{store.uri}/#/experiments/{store.experiment_id}", tmp_path)
    assert shows_training_runs(dom, store.run_name)
