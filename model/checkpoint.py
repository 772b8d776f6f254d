"""Save and load trained U-Nets as safetensors weights plus a JSON config (no pickle).

Both files are written to a temporary name and renamed into place, so a crash never leaves
a half-written checkpoint that a later export would read. The config records the SHA-256 of
the weights, so weights changed, truncated or copied in from another checkpoint are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from model.unet import UNet, UNetConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
WEIGHTS_SHA256 = "weights_sha256"  # config key: the checksum that binds the weights to their config


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or corrupt, or the weights do not belong to the config.

    The message is one line naming the file and the problem.
    """


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(directory: Path, state_dict: dict, unet: UNetConfig, extra: dict) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (``unet`` config, ``extra``, the weights' SHA-256).

    The config is written last: a directory with a config always has its weights. The checksum
    replaces one that ``extra`` may carry over from the checkpoint it was copied from (a refit).
    """
    directory = Path(directory)
    weights = save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()})
    atomic_write(directory / WEIGHTS, lambda p: p.write_bytes(weights))
    config = {"unet": unet.to_dict(), **extra, WEIGHTS_SHA256: hashlib.sha256(weights).hexdigest()}
    atomic_write(directory / CONFIG, lambda p: p.write_text(json.dumps(config, indent=2)))
    return directory


def _detail(exc: Exception) -> str:
    """A library's error message on one short line."""
    return textwrap.shorten(str(exc), 200, placeholder=" ...")


def _read(path: Path) -> bytes:
    """The bytes of a checkpoint file; CheckpointError when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file missing: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def _parse_config(text: bytes, name: str) -> tuple[dict, UNetConfig]:
    """The config in ``text`` (named ``name`` in messages) and the U-Net it describes."""
    try:
        config = json.loads(text)
    except ValueError as exc:  # also a UnicodeDecodeError
        raise CheckpointError(f"{name}: not valid JSON ({_detail(exc)})") from None
    if not isinstance(config, dict) or not isinstance(config.get("unet"), dict):
        raise CheckpointError(f"{name}: no 'unet' settings, not a checkpoint config")
    try:
        return config, UNetConfig(**config["unet"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{name}: bad 'unet' settings ({_detail(exc)})") from None


def load_checkpoint(directory: Path, device: torch.device | str = "cpu") -> tuple[UNet, dict]:
    """Rebuild the U-Net saved in ``directory``; returns ``(net, config)``.

    Raises
    ------
    CheckpointError
        If a file is missing or unreadable, or :func:`checkpoint_from_bytes` refuses them.
    """
    directory = Path(directory)
    config, weights = _read(directory / CONFIG), _read(directory / WEIGHTS)
    return checkpoint_from_bytes(config, weights, (str(directory / CONFIG), str(directory / WEIGHTS)), device)


def checkpoint_from_bytes(
    config: bytes, weights: bytes, names: tuple[str, str], device: torch.device | str = "cpu"
) -> tuple[UNet, dict]:
    """Rebuild the U-Net of a checkpoint's two files, read from a folder or an artifact store.

    The weights must have the SHA-256 that the config records. A checkpoint saved before
    checksums were recorded has none: it still loads, its weights unchecked against the config.

    Parameters
    ----------
    config, weights : bytes
        The contents of ``config.json`` and ``model.safetensors``.
    names : tuple of str
        Where the config and the weights came from, for the messages.
    device : torch.device or str
        Where the net goes.

    Raises
    ------
    CheckpointError
        If the config is corrupt or lacks the U-Net's settings, or the weights are corrupt,
        not the ones saved with the config, or do not fit its U-Net.
    """
    config_name, weights_name = names
    settings, unet = _parse_config(config, config_name)
    recorded = settings.get(WEIGHTS_SHA256)
    if recorded is not None and hashlib.sha256(weights).hexdigest() != recorded:
        raise CheckpointError(
            f"{weights_name}: not the weights saved with {CONFIG} (their SHA-256 differs from the one it records): "
            "changed, truncated or copied from another checkpoint"
        )
    try:
        tensors = load(weights)
    except (SafetensorError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{weights_name}: not a readable safetensors file ({_detail(exc)})") from None
    net = UNet(unet)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights_name}: weights do not fit the U-Net of {CONFIG} ({_detail(exc)})") from None
    return net.to(device).eval(), settings
