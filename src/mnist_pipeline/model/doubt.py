"""An honest "not sure": calibrated probabilities, and a rule for the answers to doubt.

The network gives confident logits for anything: an X, a grid or noise come out as some digit
at 0.6-0.9. Two signals mark an answer as doubtful:

- the picture does not look like MNIST's digits: a small `Detector` network, trained on digits
  against generated non-digit pictures (`data/nondigits.py`), scores it above `max_score`;
- the network itself is unsure: its top probability, after temperature scaling, is below
  `min_probability`.

The temperature and both thresholds are chosen after training on the validation split
(`training/doubt.py`), never on the test or handwriting sets, and saved in the model file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

IMAGE_SIZE = 28


class Detector(nn.Sequential):
    """Raw pixels (N, 28, 28), 0-255, in; a score per picture out, higher the less it looks like
    a digit."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 8, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(8, 16, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 1),
        )  # fmt: skip

    def forward(self, pixels: Tensor) -> Tensor:
        return super().forward(pixels.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE) / 255.0)[:, 0]


@dataclass
class Doubt:
    temperature: float = 1.0
    min_probability: float = 0.0  # below: not sure
    max_score: float = math.inf  # the detector's score above: not sure
    detector: Detector | None = None

    def judge(self, logits: Tensor, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """Calibrated probabilities (N, 10) and whether each answer is not sure (N,)."""
        with torch.inference_mode():
            probabilities = torch.softmax(logits.double() / self.temperature, dim=1)
            unsure = probabilities.max(dim=1).values < self.min_probability
            if self.detector is not None:
                unsure |= self.detector(pixels.float()) > self.max_score
        return probabilities, unsure

    def payload(self) -> dict[str, Any]:
        """What the model file holds: plain numbers and tensors."""
        values = {
            k: float(getattr(self, k)) for k in ("temperature", "min_probability", "max_score")
        }
        detector = self.detector.state_dict() if self.detector is not None else None
        return values | {"detector": detector}

    @classmethod
    def from_payload(cls, payload: object) -> Doubt:
        """Checked: a `ValueError` naming the field for anything that would give nonsense."""
        if not isinstance(payload, dict):
            raise ValueError(f"doubt={type(payload).__name__} is not a table of its settings")
        values = {}
        for key, low in (("temperature", 1e-3), ("min_probability", 0.0), ("max_score", -1e9)):
            value = payload.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise ValueError(f"doubt.{key}={value!r} is not a number")
            high = 1.0 if key == "min_probability" else math.inf
            if not low <= value <= high or (key == "temperature" and math.isinf(value)):
                raise ValueError(f"doubt.{key}={value!r} is out of range")
            values[key] = float(value)
        detector = None
        if payload.get("detector") is not None:
            detector = Detector()
            try:
                detector.load_state_dict(payload["detector"])
            except (RuntimeError, TypeError, AttributeError) as e:
                raise ValueError(f"doubt.detector does not fit the detector network ({e})") from e
            if not all(torch.isfinite(t).all() for t in detector.state_dict().values()):
                raise ValueError("doubt.detector holds NaN or infinite weights")
            detector.eval()
        return cls(**values, detector=detector)
