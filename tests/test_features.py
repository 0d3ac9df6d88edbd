"""What the network sees (report/activations.py) and `reports/features.png` (report/features.py):
the captured maps are the network's own, for every variant, and the figure is drawn quickly."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mnist_pipeline.model.networks import MLP, ConvNet
from mnist_pipeline.report.activations import look, scaled
from mnist_pipeline.report.features import draw, grid_shape, pick
from mnist_pipeline.report.figures import tile
from synthetic import synthetic_digits

LENET5 = {"channels": (6, 16), "kernel_size": 5, "padding": ("same", "valid")}
CNN = {"channels": (32, 64), "kernel_size": 3, "padding": "valid", "pool_size": (1, 2)}
BN_CNN = {"channels": (8, 8, 16, 16), "kernel_size": 3, "padding": "same", "batch_norm": True}
NORM = {"mean": 0.13, "std": 0.31}  # of pixels / 255, as the training split has them


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(3, 1, 28, 28)


def test_lenet5_maps_are_its_convolutions_and_poolings(images: torch.Tensor) -> None:
    network = ConvNet(**LENET5).eval()
    seen = look(network, images)
    assert [tuple(s.convolved.shape) for s in seen.stages] == [(3, 6, 28, 28), (3, 16, 10, 10)]
    assert [tuple(s.pooled.shape) for s in seen.stages] == [(3, 6, 14, 14), (3, 16, 5, 5)]
    conv = network[0]
    assert torch.allclose(seen.stages[0].convolved, conv(images), atol=1e-6)
    assert torch.allclose(seen.stages[0].pooled, F.max_pool2d(conv(images), 2), atol=1e-6)
    assert torch.equal(seen.filters, conv.weight[:, 0].detach())
    assert torch.allclose(seen.logits, network(images), atol=1e-6)


def test_a_convolution_without_pooling_has_no_pooled_maps(images: torch.Tensor) -> None:
    """PyTorch's examples/mnist CNN pools after its second convolution only: the pooled maps of
    the second must not be filed under the first."""
    seen = look(ConvNet(**CNN), images)
    assert seen.stages[0].pooled is None
    assert tuple(seen.stages[0].convolved.shape) == (3, 32, 26, 26)
    assert tuple(seen.stages[1].pooled.shape) == (3, 64, 12, 12)


def test_an_mlp_shows_what_it_has(images: torch.Tensor) -> None:
    network = MLP(hidden=(16,))
    seen = look(network, images)
    assert seen.filters is None and seen.stages == []
    assert torch.allclose(seen.logits, network.eval()(images))


def test_looking_leaves_the_network_as_it_was(images: torch.Tensor) -> None:
    """No hook left behind (it would keep every later batch's maps alive), training mode kept,
    and batch norm's running statistics untouched (they are used, not updated)."""
    network = ConvNet(**BN_CNN).train()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    look(network, images)
    assert network.training
    assert all(not m._forward_hooks for m in network.modules())
    after = network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_scaled_stretches_each_map_over_0_255() -> None:
    maps = torch.stack([torch.linspace(-3, 5, 16).view(4, 4), torch.full((4, 4), 7.0)])
    out = scaled(maps)
    assert out.dtype == np.uint8
    assert (out[0].min(), out[0].max()) == (0, 255)
    assert out[0, 0, 0] == 0 and out[0, -1, -1] == 255
    assert (out[1] == 0).all()  # a flat map has no contrast to show


def test_pick_takes_the_first_digit_of_each_class() -> None:
    assert pick(np.array([7, 2, 7, 1, 0, 2]), 3) == [0, 1, 3]
    assert pick(np.array([4, 4, 4]), 3) == [0]


@pytest.mark.parametrize("count", [1, 6, 16, 32, 64])
def test_every_map_has_a_place_and_few_are_empty(count: int) -> None:
    rows, cols = grid_shape(count)
    assert count <= rows * cols < count + rows
    assert cols >= rows


def test_tile_places_each_map_between_gaps() -> None:
    maps = np.arange(4, dtype=np.uint8).reshape(4, 1, 1) + 10
    out = tile(maps, (2, 2), gap=1, colour=(1, 2, 3))
    assert out.shape == (3, 3, 3)
    assert out[[0, 0, 2, 2], [0, 2, 0, 2], 0].tolist() == [10, 11, 12, 13]
    assert out[1, 1].tolist() == [1, 2, 3]


@pytest.mark.parametrize("variant", [LENET5, CNN, BN_CNN, None], ids=["lenet5", "cnn", "bn", "mlp"])
def test_the_figure_is_drawn_for_every_variant(variant: dict | None, tmp_path) -> None:
    images, labels = synthetic_digits(40, seed=3)
    model = MLP(hidden=(16,)) if variant is None else ConvNet(**variant)
    path = tmp_path / "features.png"
    draw(model, NORM, images, labels, path)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width >= 600
        # one row per layer: an MLP's figure is the digits alone, a CNN's several times taller
        tall = png.height / png.width
    assert tall < 0.5 if variant is None else tall > 0.8
    assert [p.name for p in tmp_path.iterdir()] == ["features.png"]  # no temporary file left


def test_the_figure_costs_evaluate_well_under_a_second(tmp_path) -> None:
    """It runs in every `evaluate`: LeNet-5's figure, once matplotlib is warm (evaluate has drawn
    the confusion matrix by then), takes about 0.5 s of CPU (0.4 s of wall time on an idle 2-core
    machine). CPU time, not wall time: a busy CI machine slows the clock, not the work."""
    images, labels = synthetic_digits(40, seed=3)
    draw(ConvNet(**LENET5), NORM, images, labels, tmp_path / "warm.png")
    start = time.process_time()
    draw(ConvNet(**LENET5), NORM, images, labels, tmp_path / "features.png")
    assert time.process_time() - start < 2.0
