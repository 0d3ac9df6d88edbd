"""The "not sure" rule: chosen after training on the validation split, saved in the model file,
checked when opened, and the same on every front end. Tiny synthetic data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mnist_pipeline.data import nondigits, splits
from mnist_pipeline.model import model_file
from mnist_pipeline.model.doubt import Detector, Doubt
from mnist_pipeline.model.networks import ConvNet
from mnist_pipeline.report.metrics import calibration_error
from mnist_pipeline.serving.images import to_mnist
from mnist_pipeline.training import doubt
from synthetic import write_processed

NORM = {"mean": 40.0, "std": 60.0}
LENET5 = {"_target_": "mnist_pipeline.model.networks.ConvNet"}


@pytest.fixture(scope="module")
def chosen(tmp_path_factory: pytest.TempPathFactory) -> tuple[Doubt, Path, ConvNet]:
    processed = write_processed(tmp_path_factory.mktemp("processed"))
    torch.manual_seed(0)
    network, state = ConvNet().eval(), torch.get_rng_state()
    rule = doubt.choose(network, NORM, processed, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the training's random state untouched
    return rule, processed, network


def test_each_threshold_flags_its_share_of_the_validation_digits(chosen) -> None:
    rule, processed, network = chosen
    val = splits.load(processed, "val")
    pixels = torch.from_numpy(val.images).float()
    with torch.inference_mode():
        logits = model_file.Served(network, NORM, rule)(pixels)
        scores = rule.detector(pixels)
    probabilities, _ = rule.judge(logits, pixels)
    assert rule.temperature > 0 and 0 < rule.min_probability < 1 and math.isfinite(rule.max_score)
    most = doubt.FLAGGED + 1 / len(val.labels)  # a quantile of a few hundred digits
    assert (probabilities.max(dim=1).values < rule.min_probability).double().mean() <= most
    assert (scores > rule.max_score).double().mean() <= most


def test_the_detector_flags_non_digits_drawn_with_another_seed(chosen) -> None:
    rule, processed, _ = chosen
    digits = torch.from_numpy(splits.load(processed, "val").images).float()
    others = torch.from_numpy(np.stack([to_mnist(p) for _, p in nondigits.generate(60, seed=99)]))
    flagged = (rule.detector(others) > rule.max_score).double().mean()
    assert flagged >= 0.9 > (rule.detector(digits) > rule.max_score).double().mean()


def test_the_same_training_chooses_the_same_rule(chosen) -> None:
    rule, processed, network = chosen
    again = doubt.choose(network, NORM, processed, seed=3)
    assert again.payload()["temperature"] == rule.payload()["temperature"]
    ours, theirs = again.detector.state_dict(), rule.detector.state_dict()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)


def test_the_rule_travels_in_the_model_file(chosen, tmp_path: Path) -> None:
    rule, _, _ = chosen
    path = tmp_path / "model.pt"
    model_file.save(path, ConvNet(), LENET5, NORM, rule)
    _, _, read = model_file.read(path)
    assert read.payload()["min_probability"] == rule.min_probability
    pixels = torch.rand(4, 28, 28) * 255
    logits = torch.randn(4, 10)
    for a, b in zip(read.judge(logits, pixels), rule.judge(logits, pixels), strict=True):
        assert torch.equal(a, b)


def test_a_model_file_from_before_the_rule_answers_as_before(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    model_file.save(path, ConvNet(), LENET5, NORM)
    _, _, rule = model_file.read(path)
    logits = torch.randn(3, 10)
    probabilities, unsure = rule.judge(logits, torch.zeros(3, 28, 28))
    assert torch.allclose(probabilities, torch.softmax(logits.double(), 1)) and not unsure.any()


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("temperature", 0.0, "doubt.temperature=0.0 is out of range"),
        ("temperature", float("nan"), "doubt.temperature=nan is not a number"),
        ("min_probability", "high", "doubt.min_probability='high' is not a number"),
        ("detector", {"0.weight": torch.zeros(3)}, "doubt.detector does not fit"),
    ],
)
def test_a_bad_rule_in_a_model_file_is_refused_naming_it(
    tmp_path: Path, field: str, value: object, named: str
) -> None:
    path = tmp_path / "model.pt"
    model_file.save(path, ConvNet(), LENET5, NORM, Doubt(detector=Detector()))
    payload = torch.load(path, weights_only=True)
    payload["doubt"][field] = value
    torch.save(payload, path)
    with pytest.raises(model_file.CheckpointError, match=named):
        model_file.read(path)


def test_calibration_error_is_the_gap_between_confidence_and_accuracy() -> None:
    labels = torch.tensor([0, 0, 0, 0])
    right_at_90 = torch.tensor([[0.9, 0.1]] * 4, dtype=torch.float64)
    assert calibration_error(right_at_90, labels) == pytest.approx(0.1)  # 90% sure, 100% right
    half_right = torch.tensor([[0.75, 0.25], [0.75, 0.25], [0.25, 0.75], [0.25, 0.75]])
    assert calibration_error(half_right.double(), labels) == pytest.approx(0.25)


def test_the_temperature_stays_in_range_when_every_validation_digit_is_right() -> None:
    """Perfectly separated logits: the likelihood improves as T falls towards 0 without end (an
    unbounded fit gave NaN, and the model file was refused)."""
    torch.manual_seed(0)
    logits = torch.randn(500, 10) * 5
    assert doubt.fit_temperature(logits, logits.argmax(dim=1)) == pytest.approx(0.05)
    calibrated = torch.randn(500, 10)
    labels = torch.distributions.Categorical(logits=calibrated / 2).sample()
    assert doubt.fit_temperature(calibrated, labels) == pytest.approx(2.0, rel=0.3)
