"""The networks, plain `torch.nn` (no Lightning here, so evaluation and serving import less).

Each class is built from the tutorial's knobs and checks them when constructed, so a bad
combination fails at config time with a message naming the knob, not inside a forward pass.
Input is a batch of normalised images shaped (N, 1, 28, 28); output is (N, 10) logits (softmax
lives in the cross-entropy loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from mnist_pipeline.data.tensors import normalise
from mnist_pipeline.model.augment import Augment
from mnist_pipeline.model.knobs import KNOBS, check_parameters, choose, per_layer, widths

IMAGE_SIZE = 28
NUM_CLASSES = 10

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def padding_amount(padding: str, kernel_size: int) -> int:
    """The tutorial's padding modes: SAME keeps the size (stride 1), VALID adds none, FULL k-1."""
    amounts = {"same": (kernel_size - 1) // 2, "valid": 0, "full": kernel_size - 1}
    return choose(amounts, padding, "padding")


def conv_output_size(size: int, kernel_size: int, padding: int, stride: int) -> int:
    return (size + 2 * padding - kernel_size) // stride + 1


def head(
    in_features: int,
    hidden: Sequence[int],
    activation: str,
    dropout: float,
    before: int = 0,
) -> list[nn.Module]:
    """Fully connected layers ending in the 10 class logits; `before`: the parameters of the
    layers before them, for the size check."""
    act = choose(ACTIVATIONS, activation, "activation")
    hidden = widths(hidden, "hidden")
    sizes = [in_features, *hidden, NUM_CLASSES]
    check_parameters(before + sum(a * b for a, b in pairwise(sizes)))
    layers: list[nn.Module] = [nn.Flatten()]
    for width in hidden:
        layers += [nn.Linear(in_features, width), act()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        in_features = width
    return [*layers, nn.Linear(in_features, NUM_CLASSES)]


class MLP(nn.Sequential):
    """No convolution at all: every pixel wired to every hidden unit. The tutorial's baseline."""

    def __init__(
        self, hidden: Sequence[int] = (256, 128), activation: str = "relu", dropout: float = 0.0
    ) -> None:
        super().__init__(*head(IMAGE_SIZE * IMAGE_SIZE, hidden, activation, dropout))


class ConvNet(nn.Sequential):
    """Convolution stages (conv → [batch norm] → [pool] → activation), then a fully connected head.

    `padding` and `pool_size` take one value for every convolution or a list with one per
    convolution; `pool_size: 1` means no pooling after that convolution. Pooling comes before the
    activation, as in LeNet-5's subsampling layers; for max pooling and a monotonic activation
    this is the same function as the other order, on a quarter of the values.

    The `augment_*` knobs put an `Augment` layer first (training only; see model/augment.py):
    degrees of rotation and shear, [low, high] scale per axis, pixels of shift, stroke change.
    """

    def __init__(
        self,
        channels: Sequence[int] = (6, 16),
        kernel_size: int = 5,
        padding: str | Sequence[str] = ("same", "valid"),
        stride: int = 1,
        pool: str = "max",
        pool_size: int | Sequence[int] = 2,
        activation: str = "relu",
        batch_norm: bool = False,
        hidden: Sequence[int] = (120, 84),
        dropout: float = 0.0,
        augment_rotate: float = 0.0,
        augment_scale: Sequence[float] = (1.0, 1.0),
        augment_shear: float = 0.0,
        augment_shift: float = 0.0,
        augment_stroke: float = 0.0,
    ) -> None:
        for knob, value in {"kernel_size": kernel_size, "stride": stride}.items():
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 1 <= value <= IMAGE_SIZE
            ):
                raise ValueError(
                    f"model.{knob}={value!r} must be a whole number of pixels from 1 to "
                    f"{IMAGE_SIZE} ({KNOBS[knob]})"
                )
        act, pool_cls = choose(ACTIVATIONS, activation, "activation"), choose(POOLS, pool, "pool")
        channels = widths(channels, "channels")
        paddings = per_layer(padding, len(channels), "padding")
        pool_sizes = per_layer(pool_size, len(channels), "pool_size")
        augment = Augment(
            augment_rotate,
            augment_scale,
            augment_shear,
            augment_shift,
            augment_stroke,
        )
        layers: list[nn.Module] = [augment] if augment.active else []
        size, in_ch, parameters = IMAGE_SIZE, 1, 0
        for i, (out_ch, mode, pool_k) in enumerate(
            zip(channels, paddings, pool_sizes, strict=True)
        ):
            pad = padding_amount(mode, kernel_size)
            size = conv_output_size(size, kernel_size, pad, stride) // pool_k
            if size < 1:
                raise ValueError(
                    f"model.padding={mode!r} with model.kernel_size={kernel_size}, "
                    f"model.stride={stride} and model.pool_size={pool_k} shrinks the feature "
                    f"map below 1x1 at convolution {i + 1} of {len(channels)}"
                )
            parameters += kernel_size * kernel_size * in_ch * out_ch
            check_parameters(parameters)
            layers.append(nn.Conv2d(in_ch, out_ch, kernel_size, stride, pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            if pool_k > 1:
                layers.append(pool_cls(pool_k))
            layers.append(act())
            in_ch = out_ch
        super().__init__(
            *layers, *head(in_ch * size * size, hidden, activation, dropout, parameters)
        )


class Standardise(nn.Module):
    """Raw pixels (0-255) shaped (N, 28, 28) or (N, 1, 28, 28) → the input the networks expect.

    Put in front of a network for serving, so callers need not know the training statistics.
    """

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, pixels: Tensor) -> Tensor:
        return normalise(pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), self.mean, self.std)


def complexity(model: nn.Module) -> dict[str, int]:
    """Trainable parameters and multiply-accumulates for one 28x28 image.

    The tutorial's point in two numbers: convolution shares weights, so LeNet-5 has fewer
    parameters than a small MLP yet does more arithmetic per image.
    """
    macs = 0

    def count(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, nn.Linear):
            macs += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    was_training = model.training
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model.eval()(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": params, "macs": macs}
