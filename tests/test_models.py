"""The networks: output shapes, feature-map arithmetic, knob validation, LeNet-5's size."""

import itertools

import pytest
import torch
from torch import nn

from mnist_pipeline.models import MLP, ConvNet, Standardise, conv_output_size, padding_amount


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "padding, pool, activation",
    list(itertools.product(["same", "valid", "full"], ["max", "avg"], ["relu", "tanh"])),
)
def test_convnet_output_shape(padding, pool, activation):
    model = ConvNet(first_padding=padding, padding=padding, pool=pool, activation=activation)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize(
    "padding, amount, size", [("same", 2, 28), ("valid", 0, 24), ("full", 4, 32)]
)
def test_feature_map_arithmetic(padding, amount, size):
    assert padding_amount(padding, 5) == amount
    assert conv_output_size(28, 5, amount, 1) == size
    conv = ConvNet(channels=(4,), first_padding=padding)[0]
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
        ConvNet(channels=(6, 16, 32, 64))


def test_huge_stride_names_the_knob():
    with pytest.raises(ValueError, match=r"model\.stride=100") as info:
        ConvNet(stride=100)
    assert "model.first_padding='same'" in str(info.value)
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


def test_unknown_first_padding_names_first_padding():
    with pytest.raises(ValueError, match=r"model\.first_padding='bogus'"):
        ConvNet(first_padding="bogus")


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
