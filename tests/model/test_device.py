"""model.device: the device picked by name, and tiles as tensors."""

import numpy as np
import pytest
import torch
from helpers import CPU

from model.device import pick_device, to_tensor


def test_pick_device_cpu():
    if not torch.cuda.is_available():
        assert pick_device("auto") == CPU
        assert pick_device() == CPU
    assert pick_device("cpu") == CPU


@pytest.mark.parametrize("name, message", [("nonsense", "unknown device 'nonsense'"), ("meta", "unsupported device")])
def test_pick_device_unknown_raises(name, message):
    with pytest.raises(ValueError, match=message):
        pick_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_pick_device_missing_cuda_raises(name):
    with pytest.raises(ValueError, match="CUDA is not available here"):
        pick_device(name)


def test_to_tensor_scales_uint8():
    images = np.array([[[0, 255], [51, 102]]], np.uint8)
    x = to_tensor(images, CPU)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    torch.testing.assert_close(x[0, 0], torch.tensor([[0.0, 1.0], [0.2, 0.4]]))
    masks = np.array([[[0.0, 0.5]]], np.float32)
    assert torch.equal(to_tensor(masks, CPU), torch.tensor([[[[0.0, 0.5]]]]))
