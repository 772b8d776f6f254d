"""Tests for model.unet: shapes, parameter counts and config validation."""

import pytest
import torch

from model.unet import UNet, UNetConfig, count_parameters


@pytest.mark.parametrize("upsample", ["interp", "transpose"])
@pytest.mark.parametrize("depth", [3, 4])
def test_output_shape_matches_input(depth, upsample):
    torch.manual_seed(0)
    net = UNet(UNetConfig(depth, upsample, 2)).eval()
    x = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 1, 32, 48)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_seed_size_parameter_count():
    assert count_parameters(UNet(UNetConfig(4, "interp", 64))) == 34_512_705


@pytest.mark.parametrize("upsample", ["interp", "transpose"])
def test_depth_3_has_fewer_parameters_than_depth_4(upsample):
    small = count_parameters(UNet(UNetConfig(3, upsample, 4)))
    large = count_parameters(UNet(UNetConfig(4, upsample, 4)))
    assert 0 < small < large


def test_count_parameters_ignores_frozen():
    net = UNet(UNetConfig(3, "interp", 2))
    total = count_parameters(net)
    net.head.weight.requires_grad_(False)
    assert count_parameters(net) == total - net.head.weight.numel()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"depth": 5}, "depth must be one of"),
        ({"depth": 2}, "depth must be one of"),
        ({"upsample": "bilinear"}, "upsample must be one of"),
        ({"base": 0}, "base must be a positive integer"),
        ({"base": -1}, "base must be a positive integer"),
        ({"base": 2.0}, "base must be a positive integer"),
    ],
)
def test_invalid_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**kwargs)


def test_config_to_dict_round_trips():
    config = UNetConfig(3, "transpose", 8)
    assert config.to_dict() == {"depth": 3, "upsample": "transpose", "base": 8}
    assert UNetConfig(**config.to_dict()) == config
