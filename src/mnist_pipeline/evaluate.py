"""DVC stage `evaluate`: test metrics, confusion matrix and plots, logged to train's MLflow run."""

from __future__ import annotations

import gc

if __name__ == "__main__":  # a command: no garbage collection while importing (runtime/command.py)
    gc.disable()

import logging
from functools import partial
from pathlib import Path

import mlflow
import torch
from omegaconf import DictConfig

from mnist_pipeline.config.checks import ConfigError
from mnist_pipeline.config.guard import ParamsSnapshot
from mnist_pipeline.data import splits
from mnist_pipeline.data.tensors import normalise
from mnist_pipeline.model import model_file
from mnist_pipeline.model.doubt import Doubt
from mnist_pipeline.model.networks import complexity
from mnist_pipeline.report import features, figures, metrics
from mnist_pipeline.runtime.command import run_stage
from mnist_pipeline.serving import loader
from mnist_pipeline.tracking import registry, run, run_file
from mnist_pipeline.tracking.store import TrackingError, tracking_uri
from mnist_pipeline.utils.atomic import write_json, write_text
from mnist_pipeline.utils.paths import PIPELINE, PROCESSED_DIR, Outputs
from mnist_pipeline.utils.redact import redact

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig, out: Outputs = PIPELINE, data_dir: Path = PROCESSED_DIR) -> float:
    """Write the test reports, then log them to the training run and promote the model if it is
    the best. Reports come first: a tracking store gone away loses none of them."""
    record = run_file.read_checked(out, cfg.tracking.uri)  # the right model, the right store
    model, norm, doubt = model_file.read(out.model)
    test = splits.load(data_dir, "test")
    images = normalise(torch.from_numpy(test.images), norm["mean"], norm["std"])
    logits = metrics.predict(model, images, cfg.data.eval_batch_size)
    labels = torch.from_numpy(test.labels)
    result = metrics.report(logits, labels)
    headline = {k: result[k] for k in metrics.HEADLINE} | sureness(logits, labels, test, doubt)
    size = complexity(model)  # parameters and multiply-accumulates per image
    uri = tracking_uri(cfg.tracking.uri)
    link = {"run_id": record.run_id, "url": record.link(uri)}
    yours = your_digits(data_dir)
    mine = None if yours is None else accuracy(model_file.Served(model, norm, doubt), yours)
    extra = {} if mine is None else {"yours": {"acc": mine, "digits": len(yours)}}
    write_reports(out.reports, test, result, headline, size, link, extra)
    features.draw(model, norm, test.images, test.labels, out.reports / "features.png")
    try:
        with run.evaluation_run(cfg, record):
            run.log_test_results(headline, result["per_class"])
            run.log_artifacts(
                out.reports, [*REPORTS, "confusion.png", "mistakes.png", "features.png"]
            )
            mlflow.log_metrics({f"model_{name}": value for name, value in size.items()})
            if yours is None:
                registry.promote_if_better(record.run_id, result["acc"])
            else:
                mlflow.log_metrics({"yours_acc": mine, "yours_digits": len(yours)})
                registry.promote_for_yours(
                    record.run_id, result["acc"], mine, partial(champion_on, yours, uri)
                )
    except Exception as e:  # the store went away or refused: the reports are on disk already
        raise TrackingError(
            f"the test reports are in {out.reports}/ (test accuracy {result['acc']:.4f}), but "
            f"MLflow at {redact(uri)} did not take them ({type(e).__name__}: "
            f"{redact(str(e).splitlines()[0][:200])}). Run `dvc repro evaluate` again once it "
            "answers."
        ) from e
    return result["acc"]


REPORTS = ["metrics.json", "per_class.json"]


def your_digits(data_dir: Path) -> splits.Split | None:
    """Your own held-out digits (data/yours/, split by preprocess), if there are any."""
    if not (data_dir / "yours_heldout.npz").is_file():
        return None
    return splits.load(data_dir, "yours_heldout")


def champion_on(digits: splits.Split, store: str, version: str) -> float:
    """The accuracy of a registered version on your held-out digits; -1 (any model beats it)
    when it cannot be opened any more, saying so."""
    try:
        network = loader.network(f"{registry.MODELS}/{version}", store=store)
    except (loader.ModelError, model_file.CheckpointError) as e:
        log.warning("the champion, version %s, cannot be scored on your digits: %s", version, e)
        return -1.0
    return accuracy(network, digits)


def accuracy(network: torch.nn.Module, digits: splits.Split) -> float:
    """The share of `digits` a network taking raw pixels gets right."""
    with torch.inference_mode():
        logits = network(torch.from_numpy(digits.images).float())
    return (logits.argmax(dim=1).numpy() == digits.labels).mean().item()


def sureness(logits: torch.Tensor, labels: torch.Tensor, test: splits.Split, doubt: Doubt) -> dict:
    """Calibration before and after the model's temperature, and its "not sure" rule on the test
    set: how many it flags, and the accuracy of the answers it gives without doubt."""
    probabilities, unsure = doubt.judge(logits, torch.from_numpy(test.images))
    sure = ~unsure
    right = probabilities.argmax(dim=1) == labels
    return {
        "ece": metrics.calibration_error(torch.softmax(logits.double(), dim=1), labels),
        "ece_calibrated": metrics.calibration_error(probabilities, labels),
        "not_sure": unsure.double().mean().item(),
        "acc_when_sure": (right & sure).sum().item() / max(1, int(sure.sum())),
    }


def write_reports(
    folder: Path,
    test: splits.Split,
    result: dict,
    headline: dict,
    size: dict,
    link: dict,
    extra: dict,
) -> None:
    """metrics.json (what `dvc metrics` and `dvc exp show` read: MNIST test and, with your own
    digits, `yours` beside it), per-class scores, the confusion pairs for `dvc plots`, and the
    two figures."""
    write_json(folder / "metrics.json", {"test": headline, **extra, "model": size, "mlflow": link})
    write_json(folder / "per_class.json", result["per_class"])
    pairs = zip(test.labels, result["predictions"], strict=True)
    write_text(
        folder / "confusion.csv", "actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in pairs)
    )
    figures.confusion(
        result["confusion"], folder / "confusion.png", f"test accuracy {result['acc']:.2%}"
    )
    figures.mistakes(
        test.images, test.labels, result["predictions"], result["confidence"],
        folder / "mistakes.png",
    )  # fmt: skip


def main() -> None:
    """The DVC stage. params.yaml must be at the end what it was at the start (two `dvc exp run`
    in one workspace would otherwise record reports under params they were not made with)."""
    params = ParamsSnapshot.read()
    evaluate(params.config)
    params.check("the reports just written")


# What an evaluation can refuse: each is one paragraph for the user, never a traceback.
EXPECTED = (ConfigError, FileNotFoundError, splits.DataError, model_file.CheckpointError)
EXPECTED += (TrackingError,)

if __name__ == "__main__":
    run_stage(main, *EXPECTED)
