"""Training-time augmentation as a layer: real digits vary in size, slant, shape and thickness.

MNIST's writers were American Census employees and students, writing on forms; digits scanned
from elsewhere, or drawn with a mouse, are wider or narrower, slanted more, and thicker or
thinner. Showing the network each training digit a little rotated, stretched, sheared, moved and
re-inked teaches it those variations; it costs one `grid_sample` a batch.

Part of the network, so it runs wherever the batch is (GPU included) and vanishes in `eval()`:
the evaluated, saved and served model is the plain network. It has no weights, so a model file
stays loadable whatever these knobs say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Augment(nn.Module):
    """A random stroke-width change, then a random affine map, drawn per image.

    - `rotate`: degrees either way; `shear`: degrees of slant either way (x moves with y);
    - `scale`: [low, high] factors, drawn for x and y independently (log-uniform), so the aspect
      ratio changes too; `shift`: pixels either way in x and y (sub-pixel, bilinear);
    - `stroke`: up to this fraction of a 3x3 grey dilation (thicker) or erosion (thinner).

    The background (each image's darkest value: paper, whatever the normalisation made of 0)
    fills what moves in from outside the frame.
    """

    def __init__(
        self,
        rotate: float = 0.0,
        scale: Sequence[float] = (1.0, 1.0),
        shear: float = 0.0,
        shift: float = 0.0,
        stroke: float = 0.0,
    ) -> None:
        super().__init__()
        low, high = check(rotate, scale, shear, shift, stroke)
        self.rotate, self.shear, self.shift, self.stroke = rotate, shear, shift, stroke
        self.log_scale = (math.log(low), math.log(high))

    @property
    def affine(self) -> bool:
        return bool(self.rotate or self.shear or self.shift or self.log_scale != (0.0, 0.0))

    @property
    def active(self) -> bool:
        """Whether it changes anything: a network leaves it out otherwise."""
        return self.affine or bool(self.stroke)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        background = x.amin(dim=(1, 2, 3), keepdim=True)
        ink = x - background
        if self.stroke:
            ink = self.restroke(ink)
        if self.affine:
            grid = F.affine_grid(self.inverse_maps(ink), list(ink.shape), align_corners=False)
            ink = F.grid_sample(ink, grid, align_corners=False)  # zero ink outside the frame
        return ink + background

    def restroke(self, ink: Tensor) -> Tensor:
        """Each image blended towards its 3x3 dilation (amount > 0) or erosion (amount < 0)."""
        amount = uniform(-self.stroke, self.stroke, (len(ink), 1, 1, 1), ink)
        thicker, thinner = dilate(ink), -dilate(-ink)
        return torch.lerp(ink, torch.where(amount > 0, thicker, thinner), amount.abs())

    def inverse_maps(self, ink: Tensor) -> Tensor:
        """(N, 2, 3) maps from output to input coordinates, as `affine_grid` wants: the inverse of
        rotation · shear · scale, then the shift (in `affine_grid`'s units: 2 / size a pixel)."""
        n, (height, width) = len(ink), ink.shape[-2:]
        angle = uniform(-self.rotate, self.rotate, (n,), ink).deg2rad()
        slant = uniform(-self.shear, self.shear, (n,), ink).deg2rad().tan()
        sx, sy = uniform(*self.log_scale, (2, n), ink).exp()
        cos, sin = angle.cos(), angle.sin()
        # forward map [[a, b], [c, d]] = R(angle) @ [[1, slant], [0, 1]] @ diag(sx, sy); det sx*sy
        a, b = cos * sx, (cos * slant - sin) * sy
        c, d = sin * sx, (sin * slant + cos) * sy
        inverse = torch.stack([d, -b, -c, a], dim=1).view(n, 2, 2) / (sx * sy).view(n, 1, 1)
        shift = torch.stack(
            [
                uniform(-self.shift, self.shift, (n,), ink) * (2 / width),
                uniform(-self.shift, self.shift, (n,), ink) * (2 / height),
            ],
            dim=1,
        ).unsqueeze(2)
        return torch.cat([inverse, -(inverse @ shift)], dim=2)


def dilate(x: Tensor) -> Tensor:
    """3x3 grey dilation (what lies outside the frame counts as 0), as a maximum over three rows
    then three columns: several times faster on a CPU than `max_pool2d(x, 3, 1, 1)`."""
    p = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])
    return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def uniform(low: float, high: float, shape: tuple[int, ...], like: Tensor) -> Tensor:
    return torch.empty(shape, device=like.device, dtype=like.dtype).uniform_(low, high)


def check(
    rotate: float,
    scale: Sequence[float],
    shear: float,
    shift: float,
    stroke: float,
) -> tuple[float, float]:
    """The knobs' ranges, each refused with its name; returns the scale's (low, high)."""
    if isinstance(scale, str | int | float) or len(scale) != 2:
        raise ValueError(f"model.augment_scale={scale!r} must be two factors [low, high]")
    low, high = (float(v) for v in scale)
    if not 0 < low <= high:
        raise ValueError(f"model.augment_scale={list(scale)} must be 0 < low <= high")
    for knob, value, top in (
        ("rotate", rotate, 180),
        ("shear", shear, 60),
        ("stroke", stroke, 1),
    ):
        if not 0 <= value <= top:
            raise ValueError(f"model.augment_{knob}={value} must be between 0 and {top}")
    if shift < 0:
        raise ValueError(f"model.augment_shift={shift} must be at least 0")
    return low, high
