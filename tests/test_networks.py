"""The networks: output shapes, feature-map arithmetic, knob validation, LeNet-5's size."""

import itertools

import pytest
import torch
from torch import nn

from mnist_pipeline.model.networks import (
    MLP,
    ConvNet,
    RandomShift,
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
    with pytest.raises(ValueError, match=r"model\.stride=100") as info:
        ConvNet(stride=100)
    assert "model.padding='same'" in str(info.value)
    assert "convolution 1" in str(info.value)


def test_stride_below_one_is_refused():
    with pytest.raises(ValueError, match=r"model\.stride=0 must be at least 1"):
        ConvNet(stride=0)


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
    assert isinstance(model[0], RandomShift)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model) == 2
    assert all(m.bias is None for m in model if isinstance(m, nn.Conv2d))


def test_random_shift_moves_training_images_and_leaves_eval_alone():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28) + 1  # strictly positive: zero fill shows where it moved
    shift = RandomShift(2)
    shifted = shift(x)
    assert shifted.shape == x.shape
    assert not torch.equal(shifted, x)
    assert (shifted == 0).any()  # edges filled with zeros
    # every output image is its input translated: its pixel multiset is a subset of the input's
    assert torch.isin(shifted[0][shifted[0] != 0], x[0]).all()
    assert torch.equal(shift.eval()(x), x)


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
