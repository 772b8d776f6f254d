"""Tests for model.checkpoint: safetensors + JSON round trip and atomic writes."""

import json

import pytest
import torch
from safetensors.torch import load_file

from model.checkpoint import CONFIG, WEIGHTS, atomic_write, load_checkpoint, save_checkpoint
from model.unet import UNet, UNetConfig


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(3)
    unet = UNetConfig(3, "transpose", 2)
    net = UNet(unet)
    extra = {"counter": "watershed", "threshold": 0.5, "epochs": 3}
    directory = save_checkpoint(tmp_path / "ckpt", net.state_dict(), unet, extra)
    return directory, net, unet, extra


def test_round_trip_weights_and_config(saved):
    directory, net, unet, extra = saved
    loaded, config = load_checkpoint(directory)
    assert isinstance(loaded, UNet)
    assert loaded.config == unet
    assert not loaded.training
    assert config == {"unet": unet.to_dict(), **extra}
    original, restored = net.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for k in original:
        assert restored[k].dtype == original[k].dtype, k
        assert torch.equal(restored[k], original[k]), k


def test_files_are_safetensors_and_plain_json(saved):
    directory, net, unet, extra = saved
    tensors = load_file(str(directory / WEIGHTS))
    assert tensors.keys() == net.state_dict().keys()
    config = json.loads((directory / CONFIG).read_text())
    assert config["unet"] == unet.to_dict()
    assert config["threshold"] == 0.5
    assert sorted(p.name for p in directory.iterdir()) == sorted([WEIGHTS, CONFIG])


@pytest.mark.parametrize("missing", [CONFIG, WEIGHTS])
def test_missing_file_raises_naming_it(saved, missing):
    directory = saved[0]
    (directory / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing.replace(".", r"\.")):
        load_checkpoint(directory)


def test_atomic_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write(target, lambda p: p.write_text("hello"))
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_atomic_write_failure_keeps_old_content(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    seen = []

    def broken(p):
        p.write_text("half-written")
        seen.append(p)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert seen and seen[0] != target
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
