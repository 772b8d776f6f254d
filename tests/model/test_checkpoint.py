"""Tests for model.checkpoint: safetensors + JSON round trip and atomic writes."""

import hashlib
import json
import re

import pytest
import torch
from safetensors.torch import load_file

from model.checkpoint import (
    CONFIG,
    WEIGHTS,
    WEIGHTS_SHA256,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    save_checkpoint,
)
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
    sha256 = hashlib.sha256((directory / WEIGHTS).read_bytes()).hexdigest()
    assert config == {"unet": unet.to_dict(), **extra, WEIGHTS_SHA256: sha256}
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
    with pytest.raises(CheckpointError, match=f"checkpoint file missing: .*{re.escape(missing)}"):
        load_checkpoint(directory)


def other_weights(tmp_path, unet):
    """The weights file of another checkpoint, of a net shaped by ``unet``."""
    torch.manual_seed(4)
    return save_checkpoint(tmp_path / "other", UNet(unet).state_dict(), unet, {}) / WEIGHTS


def truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def drop_checksum(directory):
    """Make ``directory`` a checkpoint saved before checksums were recorded."""
    config = json.loads((directory / CONFIG).read_text())
    del config[WEIGHTS_SHA256]
    (directory / CONFIG).write_text(json.dumps(config))


CORRUPT = {
    "truncated weights": (
        lambda d, t: truncate(d / WEIGHTS),
        WEIGHTS,
        "not the weights saved with config.json .*SHA-256 differs",
    ),
    "empty weights": (
        lambda d, t: (d / WEIGHTS).write_bytes(b""),
        WEIGHTS,
        "not the weights saved with config.json .*SHA-256 differs",
    ),
    "weights of another checkpoint": (
        lambda d, t: (d / WEIGHTS).write_bytes(other_weights(t, UNetConfig(3, "transpose", 2)).read_bytes()),
        WEIGHTS,
        "not the weights saved with config.json .*copied from another checkpoint",
    ),
    "config cut short": (lambda d, t: (d / CONFIG).write_text("{"), CONFIG, "not valid JSON"),
    "config not JSON text": (lambda d, t: (d / CONFIG).write_bytes(b"\xff\xfe\x00"), CONFIG, "not valid JSON"),
    "config a list": (lambda d, t: (d / CONFIG).write_text("[]"), CONFIG, "no 'unet' settings"),
    "config without unet": (lambda d, t: (d / CONFIG).write_text('{"trial": 0}'), CONFIG, "no 'unet' settings"),
    "bad unet settings": (
        lambda d, t: (d / CONFIG).write_text('{"unet": {"depth": 9}}'),
        CONFIG,
        "bad 'unet' settings \\(depth must be",
    ),
    "config a folder": (
        lambda d, t: ((d / CONFIG).unlink(), (d / CONFIG).mkdir()),
        CONFIG,
        "cannot read it \\(Is a directory",
    ),
    "unchecked truncated weights": (
        lambda d, t: (drop_checksum(d), truncate(d / WEIGHTS)),
        WEIGHTS,
        "not a readable safetensors file",
    ),
    "unchecked weights of another net": (
        lambda d, t: (drop_checksum(d), (d / WEIGHTS).write_bytes(other_weights(t, UNetConfig()).read_bytes())),
        WEIGHTS,
        "weights do not fit the U-Net of config.json",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_checkpoint_raises_one_line_naming_the_file(saved, tmp_path, case):
    spoil, name, problem = CORRUPT[case]
    directory = saved[0]
    spoil(directory, tmp_path)
    with pytest.raises(CheckpointError, match=f"{re.escape(name)}: {problem}") as info:
        load_checkpoint(directory)
    assert isinstance(info.value, ValueError) and len(str(info.value).splitlines()) == 1


def test_checkpoint_without_checksum_still_loads(saved):
    directory, net, unet, extra = saved
    drop_checksum(directory)  # saved before checksums were recorded
    loaded, config = load_checkpoint(directory)
    assert config == {"unet": unet.to_dict(), **extra}
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))


def test_resaving_a_loaded_config_records_the_new_checksum(saved, tmp_path):
    directory, _, unet, _ = saved
    _, config = load_checkpoint(directory)
    torch.manual_seed(5)
    refit = save_checkpoint(directory / "refit", UNet(unet).state_dict(), unet, {**config, "refit": True})
    assert load_checkpoint(refit)[1][WEIGHTS_SHA256] != config[WEIGHTS_SHA256]


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
