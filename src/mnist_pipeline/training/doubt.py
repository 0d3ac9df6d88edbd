"""Choosing the "not sure" rule (`model/doubt.py`) for a trained network, after training.

On the validation split, which training never fits: the temperature that makes the probabilities
calibrated (lowest negative log-likelihood), then the two thresholds, each flagging
`FLAGGED` of the validation digits. The detector learns digits (the training split) against
the pictures that are no digit which preprocess drew (`data/nondigits.py`) and put through the
same preprocessing as a user's image files. Seeded and on the CPU, so the same training gives
the same model file.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mnist_pipeline.data import splits
from mnist_pipeline.model.doubt import Detector, Doubt
from mnist_pipeline.model.model_file import Served

log = logging.getLogger(__name__)
FLAGGED = 0.005  # of the validation digits, by each threshold
DIGITS, EPOCHS, BATCH = 12_000, 4, 128


def choose(model: nn.Module, norm: dict[str, float], data_dir: Path, seed: int) -> Doubt:
    network = Served(model, norm, Doubt()).eval()  # raw pixels in, as served
    val = splits.load(data_dir, "val")
    pixels = torch.from_numpy(val.images).float()
    with torch.no_grad():  # not inference_mode: the temperature's fit differentiates through them
        logits = torch.cat([network(batch) for batch in pixels.split(1000)])
    temperature = fit_temperature(logits, torch.from_numpy(val.labels).long())
    digits = splits.load(data_dir, "train").images[:DIGITS]
    detector = train_detector(digits, splits.load(data_dir, "nondigits").images, seed)
    doubt = Doubt(temperature=temperature, detector=detector)
    probabilities, _ = doubt.judge(logits, pixels)
    with torch.inference_mode():
        scores = detector(pixels)
    doubt.min_probability = float(torch.quantile(probabilities.max(dim=1).values, FLAGGED))
    doubt.max_score = float(torch.quantile(scores.double(), 1.0 - FLAGGED))
    log.info(
        "not sure: temperature %.3f, below probability %.3f or detector score above %.2f",
        *(doubt.temperature, doubt.min_probability, doubt.max_score),
    )
    return doubt


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The T minimising the cross-entropy of softmax(logits / T) (Guo et al. 2017), searched on
    a log grid from 0.05 to 20 (0.7% apart): a network that is right on every validation digit
    would otherwise drive T towards 0 without end."""
    grid = torch.logspace(math.log10(0.05), math.log10(20.0), 901, dtype=torch.float64)
    scaled = logits.double()
    losses = torch.stack([nn.functional.cross_entropy(scaled / t, labels) for t in grid])
    return float(grid[int(torch.argmin(losses))])


def train_detector(digits: np.ndarray, pictures: np.ndarray, seed: int) -> Detector:
    """Digits against pictures that are no digit (both uint8, (N, 28, 28)), class-balanced; the
    global random state is left as it was."""
    x = torch.from_numpy(np.concatenate([digits, pictures]).astype(np.float32))
    y = torch.cat([torch.zeros(len(digits)), torch.ones(len(pictures))])
    weights = torch.where(y == 1, len(digits) / len(pictures), 1.0)
    with torch.random.fork_rng(), torch.enable_grad():
        torch.manual_seed(seed)
        detector = Detector()
        optimiser = torch.optim.Adam(detector.parameters(), lr=2e-3)
        for _ in range(EPOCHS):
            for batch in torch.randperm(len(x)).split(BATCH):
                optimiser.zero_grad()
                loss = nn.functional.binary_cross_entropy_with_logits(
                    detector(x[batch]), y[batch], weight=weights[batch]
                )
                loss.backward()
                optimiser.step()
    return detector.eval()
