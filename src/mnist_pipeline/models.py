"""The networks, plain `torch.nn` (no Lightning here, so evaluation and serving import less).

Each class is built from the tutorial's knobs and checks them when constructed, so a bad
combination fails at config time with a message naming the knob, not inside a forward pass.
Input is a batch of normalised images shaped (N, 1, 28, 28); output is (N, 10) logits.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mnist_pipeline.tensors import normalise

IMAGE_SIZE = 28
NUM_CLASSES = 10

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
POOLS: dict[str, type[nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def choose(table: dict, value: str, knob: str):
    if value not in table:
        raise ValueError(f"model.{knob}={value!r} is not one of {sorted(table)}")
    return table[value]


def padding_amount(padding: str, kernel_size: int, knob: str = "padding") -> int:
    """The tutorial's padding modes: SAME keeps the size (stride 1), VALID adds none, FULL k-1."""
    amounts = {"same": (kernel_size - 1) // 2, "valid": 0, "full": kernel_size - 1}
    return choose(amounts, padding, knob)


def conv_output_size(size: int, kernel_size: int, padding: int, stride: int) -> int:
    return (size + 2 * padding - kernel_size) // stride + 1


def head(
    in_features: int, hidden: Sequence[int], activation: str, dropout: float
) -> list[nn.Module]:
    """Fully connected layers ending in the 10 class logits (softmax lives in the loss)."""
    act = choose(ACTIVATIONS, activation, "activation")
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
    """Conv → activation → pool stages, then a fully connected head.

    LeNet-5 is `channels=(6, 16), kernel_size=5, hidden=(120, 84)`. `padding` applies to every
    convolution after the first, which uses `first_padding`: LeNet-5 pads its 28x28 input to LeCun's
    32x32 (SAME) and then convolves VALID.
    """

    def __init__(
        self,
        channels: Sequence[int] = (6, 16),
        kernel_size: int = 5,
        first_padding: str = "same",
        padding: str = "valid",
        stride: int = 1,
        pool: str = "max",
        pool_size: int = 2,
        activation: str = "relu",
        hidden: Sequence[int] = (120, 84),
        dropout: float = 0.0,
    ) -> None:
        if stride < 1:
            raise ValueError(f"model.stride={stride} must be at least 1")
        act, pool_cls = choose(ACTIVATIONS, activation, "activation"), choose(POOLS, pool, "pool")
        layers: list[nn.Module] = []
        size, in_ch = IMAGE_SIZE, 1
        for i, out_ch in enumerate(channels):
            knob, mode = ("first_padding", first_padding) if i == 0 else ("padding", padding)
            pad = padding_amount(mode, kernel_size, knob)
            size = conv_output_size(size, kernel_size, pad, stride) // pool_size
            if size < 1:
                raise ValueError(
                    f"model.{knob}={mode!r} with model.kernel_size={kernel_size}, "
                    f"model.stride={stride} and model.pool_size={pool_size} shrinks the feature "
                    f"map below 1x1 at convolution {i + 1}"
                )
            layers += [
                nn.Conv2d(in_ch, out_ch, kernel_size, stride, pad),
                act(),
                pool_cls(pool_size),
            ]
            in_ch = out_ch
        super().__init__(*layers, *head(in_ch * size * size, hidden, activation, dropout))


class Standardise(nn.Module):
    """Raw pixels (0-255) shaped (N, 28, 28) or (N, 1, 28, 28) → the input the networks expect.

    Put in front of a network for serving, so callers need not know the training statistics.
    """

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, pixels: Tensor) -> Tensor:
        return normalise(pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), self.mean, self.std)
