"""The tutorial's knobs, checked when a network is built: a bad value or combination fails at
config time (or when a model file from elsewhere is opened) with one line naming the knob, not
inside a forward pass or an allocation of terabytes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")
KNOBS = {
    "kernel_size": "the side of each square filter: 3 and 5 are usual",
    "stride": "how far each filter moves between positions: 1 keeps every position",
}
# Sizes are checked before any layer is allocated: a config, or a model file from elsewhere,
# asking for `hidden: [1000000000000]` gets one line naming the knob, not an allocation failure.
MAX_WIDTH = 4096  # units in a fully connected layer, or maps of a convolution
MAX_PARAMETERS = 50_000_000  # 200 MB of float32 weights: far above any network for MNIST here


def widths(values: Sequence[int], knob: str) -> list[int]:
    values = list(values)
    if any(
        not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= MAX_WIDTH for w in values
    ):
        raise ValueError(
            f"model.{knob}={values!r}: each must be a whole number from 1 to {MAX_WIDTH}"
        )
    return values


def check_parameters(count: int) -> None:
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"the model's layer sizes give {count:,} parameters, more than the "
            f"{MAX_PARAMETERS:,} allowed: make model.channels or model.hidden smaller"
        )


def choose(table: dict[str, T], value: str, knob: str) -> T:
    if value not in table:
        raise ValueError(f"model.{knob}={value!r} is not one of {sorted(table)}")
    return table[value]


def per_layer(value: T | Sequence[T], layers: int, knob: str) -> list[T]:
    """One setting for every convolution, or a list with one per convolution."""
    if isinstance(value, str | int | float):
        return [value] * layers  # type: ignore[list-item]
    values = list(value)
    if len(values) != layers:
        raise ValueError(f"model.{knob} lists {len(values)} values for {layers} convolutions")
    return values
