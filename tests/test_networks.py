"""The networks: output shapes, feature-map arithmetic, knob validation, LeNet-5's size."""

import itertools

import pytest
import torch
from torch import nn

from mnist_pipeline.model.augment import Augment, dilate
from mnist_pipeline.model.networks import (
    MLP,
    ConvNet,
    Standardise,
    complexity,
    conv_output_size,
    padding_amount,
)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "padding, pool, activation",
    list(itertools.product(["same", "valid", "full"], ["max", "avg"], ["relu", "tanh"])),
)
def test_convnet_output_shape(padding, pool, activation):
    model = ConvNet(padding=padding, pool=pool, activation=activation)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize(
    "padding, amount, size", [("same", 2, 28), ("valid", 0, 24), ("full", 4, 32)]
)
def test_feature_map_arithmetic(padding, amount, size):
    assert padding_amount(padding, 5) == amount
    assert conv_output_size(28, 5, amount, 1) == size
    conv = ConvNet(channels=(4,), padding=padding)[0]
    assert isinstance(conv, nn.Conv2d)
    assert conv.padding == (amount, amount)
    assert conv(torch.zeros(1, 1, 28, 28)).shape == (1, 4, size, size)


def test_conv_output_size_with_stride():
    assert conv_output_size(28, 3, 1, 2) == 14
    assert conv_output_size(28, 5, 0, 3) == 8


def test_lenet5_feature_maps():
    """28 -conv5 same-> 28 -pool-> 14 -conv5 valid-> 10 -pool-> 5: 16x5x5 = 400 into the head."""
    model = ConvNet()
    features = nn.Sequential(*list(model)[:6])(torch.zeros(2, 1, 28, 28))
    assert features.shape == (2, 16, 5, 5)
    first_linear = next(m for m in model if isinstance(m, nn.Linear))
    assert first_linear.in_features == 400


def test_lenet5_parameter_count():
    # conv 1*6*25+6 = 156, conv 6*16*25+16 = 2,416, fc 400*120+120 = 48,120,
    # fc 120*84+84 = 10,164, fc 84*10+10 = 850
    assert n_params(ConvNet()) == 156 + 2_416 + 48_120 + 10_164 + 850 == 61_706


def test_too_many_valid_stages_names_the_knob():
    with pytest.raises(ValueError, match=r"model\.padding='valid'.*convolution 3"):
        ConvNet(channels=(6, 16, 32, 64), padding="valid")


def test_huge_stride_names_the_knob():
    with pytest.raises(ValueError, match=r"model\.stride=100 .* from 1 to 28"):
        ConvNet(stride=100)
    with pytest.raises(ValueError, match=r"model\.stride=20") as info:
        ConvNet(stride=20)  # 28 → 2 → pooled to 1 → below 1x1 at the second convolution
    assert "model.padding='valid'" in str(info.value)
    assert "convolution 2" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, knob",
    [
        ({"hidden": [-5]}, "hidden"),
        ({"hidden": [10**12]}, "hidden"),
        ({"channels": [0, 16]}, "channels"),
        ({"channels": [6, 2.5]}, "channels"),
    ],
)
def test_layer_sizes_out_of_range_are_refused_before_allocation(kwargs, knob):
    with pytest.raises(ValueError, match=rf"model\.{knob}=.*whole number from 1 to 4096"):
        ConvNet(**kwargs)
    if knob == "hidden":
        with pytest.raises(ValueError, match=r"model\.hidden="):
            MLP(**kwargs)


def test_too_many_parameters_are_refused_before_allocation():
    with pytest.raises(ValueError, match=r"50,000,000 allowed"):
        MLP(hidden=[4096, 4096, 4096, 4096])  # 3.2M + 3 x 16.8M


def test_stride_below_one_is_refused():
    with pytest.raises(ValueError, match=r"model\.stride=0 must be a whole number of pixels"):
        ConvNet(stride=0)


@pytest.mark.parametrize("kernel_size", [0, -3, 2.5, True])
def test_kernel_size_names_the_knob_and_its_values(kernel_size):
    with pytest.raises(ValueError, match=r"model\.kernel_size=.* from 1 to 28 \(the side of each"):
        ConvNet(kernel_size=kernel_size)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pool": "median"}, "model.pool='median' is not one of ['avg', 'max']"),
        (
            {"activation": "sigmoid"},
            "model.activation='sigmoid' is not one of ['gelu', 'relu', 'tanh']",
        ),
        ({"padding": "reflect"}, "model.padding='reflect' is not one of ['full', 'same', 'valid']"),
    ],
)
def test_unknown_names_list_the_options(kwargs, message):
    with pytest.raises(ValueError) as info:
        ConvNet(**kwargs)
    assert message in str(info.value)


def test_mlp_unknown_activation():
    with pytest.raises(ValueError, match=r"model\.activation='swish'"):
        MLP(activation="swish")


def test_per_layer_lists_must_match_the_convolutions():
    with pytest.raises(ValueError, match=r"model\.padding lists 3 values for 2 convolutions"):
        ConvNet(padding=["same", "same", "valid"])
    with pytest.raises(ValueError, match=r"model\.pool_size lists 1 values for 2 convolutions"):
        ConvNet(pool_size=[2])


def test_padding_modes_change_lenet5_size():
    """The tutorial's knob, seen in the weights: VALID shrinks the maps and the head, FULL grows."""
    sizes = {mode: n_params(ConvNet(padding=mode)) for mode in ("valid", "same", "full")}
    assert sizes["valid"] < n_params(ConvNet()) < sizes["same"] < sizes["full"]
    assert complexity(ConvNet(padding="valid"))["macs"] < complexity(ConvNet())["macs"]


def test_pool_size_one_means_no_pooling():
    model = ConvNet(
        channels=(32, 64), kernel_size=3, padding="valid", pool_size=[1, 2], hidden=[128]
    )
    assert sum(isinstance(m, nn.MaxPool2d) for m in model) == 1
    assert next(m for m in model if isinstance(m, nn.Linear)).in_features == 64 * 12 * 12


def test_complexity_counts_weights_and_multiply_accumulates():
    lenet = complexity(ConvNet())
    assert lenet["params"] == 61_706
    # conv1 6x28x28 outputs x 25, conv2 16x10x10 x 150, fc 400x120 + 120x84 + 84x10
    assert lenet["macs"] == 6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    mlp = complexity(MLP(hidden=(256, 128)))
    assert mlp["params"] > lenet["params"] and mlp["macs"] == 784 * 256 + 256 * 128 + 128 * 10


def test_batch_norm_and_augmentation_layers():
    model = ConvNet(batch_norm=True, augment_shift=2)
    assert isinstance(model[0], Augment)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model) == 2
    assert all(m.bias is None for m in model if isinstance(m, nn.Conv2d))


def test_augmentation_only_when_asked_and_adds_no_weights():
    assert not any(isinstance(m, Augment) for m in ConvNet())
    augmented = ConvNet(augment_rotate=15, augment_scale=[0.8, 1.2], augment_stroke=0.5)
    assert isinstance(augmented[0], Augment)
    assert n_params(augmented) == n_params(ConvNet())
    x = torch.randn(2, 1, 28, 28)
    plain = nn.Sequential(*list(augmented)[1:])
    assert torch.equal(augmented.eval()(x), plain(x))  # evaluation: the plain network


BACKGROUND = -0.42  # what a normalisation makes of the paper (raw 0)


def blank(n: int = 1) -> torch.Tensor:
    return torch.full((n, 1, 28, 28), BACKGROUND)


def ink_of(x: torch.Tensor) -> torch.Tensor:
    return x - BACKGROUND


def centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    """(N, 2) row and column of each image's ink mass, in pixel-centre coordinates."""
    ink = ink_of(x)[:, 0]
    idx = torch.arange(28.0) + 0.5
    mass = ink.sum(dim=(1, 2))
    return torch.stack([(ink.sum(2) * idx).sum(1) / mass, (ink.sum(1) * idx).sum(1) / mass], 1)


def test_augment_scales_about_the_centre_filling_with_background():
    x = blank()
    x[..., 12:16, 12:16] = 2.0  # a 4x4 block, edges 12 to 16: centred on the frame's centre 14
    out = Augment(scale=[2.0, 2.0]).train()(x)
    ink = ink_of(out)[0, 0]
    rows = torch.nonzero(ink.sum(1) > 1e-6).flatten()
    # bilinear ink runs from pixel centre 11.5 to 16.5 (full 12.5 to 15.5): twice that about 14
    assert (rows.min().item(), rows.max().item()) == (9, 18)
    torch.testing.assert_close(ink[11:17, 11:17], torch.full((6, 6), 2.42))
    torch.testing.assert_close(ink.sum(), torch.tensor(2.42 * 16 * 4))  # 4x the area
    assert out[0, 0, 0, 0] == BACKGROUND  # paper stays paper, not 0
    torch.testing.assert_close(centre_of_mass(out), torch.tensor([[14.0, 14.0]]))


def test_augment_scales_each_axis_on_its_own():
    x = blank(64)
    x[..., 10:18, 10:18] = 2.0
    torch.manual_seed(0)
    ink = ink_of(Augment(scale=[0.5, 2.0]).train()(x)) > 1.21  # half the ink
    height = ink.any(dim=3).sum(dim=(1, 2)).float()
    width = ink.any(dim=2).sum(dim=(1, 2)).float()
    assert 3 <= height.min().item() <= height.max().item() <= 17
    assert 3 <= width.min().item() <= width.max().item() <= 17
    aspect = height / width
    assert aspect.min() < 0.6 and aspect.max() > 1.6  # the aspect ratio changes too


def test_augment_rotation_shear_and_shift_keep_the_digit():
    torch.manual_seed(0)
    x = blank(64)
    x[..., 6:22, 13:15] = 2.0  # an upright stroke: a 1
    rotated = Augment(rotate=30, shear=20).train()(x)
    assert not torch.equal(rotated, x)
    mass = ink_of(rotated).sum(dim=(1, 2, 3)) / ink_of(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(mass, torch.ones(64), atol=0.05, rtol=0)  # area kept (det 1)
    torch.testing.assert_close(centre_of_mass(rotated), centre_of_mass(x), atol=0.05, rtol=0)
    tilt = (ink_of(rotated)[:, 0, 6, :].argmax(1) - ink_of(rotated)[:, 0, 21, :].argmax(1)).abs()
    assert tilt.max() >= 4  # the top and bottom of the stroke moved apart
    moved = centre_of_mass(Augment(shift=3).train()(x)) - centre_of_mass(x)
    assert moved.abs().max() <= 3 + 1e-4 and moved.abs().max() > 2  # up to 3 pixels, sub-pixel
    assert (moved.abs().flatten() % 1 > 0.1).any()


def test_augment_stroke_thickens_and_thins():
    torch.manual_seed(0)
    x = blank(64)
    x[..., 4:24, 8:11] = 2.0  # a stroke 3 pixels wide
    mass = ink_of(Augment(stroke=1.0).train()(x)).sum(dim=(1, 2, 3)) / ink_of(x[0]).sum()
    assert mass.max() > 1.4 and mass.min() < 0.6  # up to 5 wide, down to 1 wide
    assert mass.max() <= 22 * 5 / (20 * 3) + 1e-5 and mass.min() >= 18 / 60 - 1e-5


def test_dilate_is_a_3x3_maximum():
    x = torch.rand(3, 2, 28, 28)
    torch.testing.assert_close(dilate(x), nn.functional.max_pool2d(x, 3, 1, 1), rtol=0, atol=0)


def test_augment_leaves_evaluation_alone():
    x = torch.randn(8, 1, 28, 28)
    augment = Augment(rotate=15, scale=[0.75, 1.25], shear=10, shift=2, stroke=0.5)
    assert not torch.equal(augment.train()(x), x)
    assert torch.equal(augment.eval()(x), x)
    assert not Augment().active and Augment(stroke=0.1).active and Augment(shift=1).active
    assert Augment(scale=[1.1, 1.1]).active


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scale": [1.2, 0.8]}, "model.augment_scale=[1.2, 0.8] must be 0 < low <= high"),
        ({"scale": [0, 1]}, "model.augment_scale=[0, 1] must be 0 < low <= high"),
        ({"scale": 1.2}, "model.augment_scale=1.2 must be two factors [low, high]"),
        ({"rotate": -5}, "model.augment_rotate=-5 must be between 0 and 180"),
        ({"shear": 75}, "model.augment_shear=75 must be between 0 and 60"),
        ({"stroke": 2}, "model.augment_stroke=2 must be between 0 and 1"),
        ({"shift": -1}, "model.augment_shift=-1 must be at least 0"),
    ],
)
def test_augment_knobs_are_checked(kwargs, message):
    with pytest.raises(ValueError) as info:
        ConvNet(**{f"augment_{k}": v for k, v in kwargs.items()})
    assert message in str(info.value)


def test_mlp_shape_and_size():
    model = MLP(hidden=(256, 128))
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert n_params(model) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10


def test_dropout_only_when_asked():
    assert not any(isinstance(m, nn.Dropout) for m in MLP(dropout=0.0))
    assert sum(isinstance(m, nn.Dropout) for m in MLP(hidden=(8, 8), dropout=0.5)) == 2


MEAN, STD = 0.13, 0.31


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 1, 28, 28)])
def test_standardise_raw_pixels(shape):
    pixels = torch.randint(0, 256, shape, dtype=torch.uint8)
    out = Standardise(MEAN, STD)(pixels)
    assert out.shape == (5, 1, 28, 28)
    assert out.dtype == torch.float32
    expected = (pixels.reshape(5, 1, 28, 28).float() / 255 - MEAN) / STD
    torch.testing.assert_close(out, expected)
    assert out[pixels.reshape(5, 1, 28, 28) == 0].allclose(torch.tensor(-MEAN / STD))


def test_standardise_leaves_its_input_alone():
    pixels = torch.randint(0, 256, (3, 1, 28, 28)).float()
    before = pixels.clone()
    Standardise(MEAN, STD)(pixels)
    torch.testing.assert_close(pixels, before, rtol=0, atol=0)


def test_standardise_in_front_of_a_network():
    model = nn.Sequential(Standardise(MEAN, STD), ConvNet())
    assert model(torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)).shape == (2, 10)
