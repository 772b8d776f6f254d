"""Save and load trained U-Nets as safetensors weights plus a JSON config (no pickle).

Both files are written to a temporary name and renamed into place, so a crash never leaves
a half-written checkpoint that a later export would read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.unet import UNet, UNetConfig

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


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
    """Write ``model.safetensors`` and ``config.json`` (``unet`` config plus ``extra``).

    The config is written last: a directory with a config always has its weights.
    """
    directory = Path(directory)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    atomic_write(directory / WEIGHTS, lambda p: save_file(tensors, str(p)))
    config = {"unet": unet.to_dict(), **extra}
    atomic_write(directory / CONFIG, lambda p: p.write_text(json.dumps(config, indent=2)))
    return directory


def load_checkpoint(directory: Path, device: torch.device | str = "cpu") -> tuple[UNet, dict]:
    """Rebuild the U-Net saved in ``directory``; returns ``(net, config)``.

    Raises FileNotFoundError naming the missing file.
    """
    directory = Path(directory)
    for name in (CONFIG, WEIGHTS):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"checkpoint file missing: {directory / name}")
    config = json.loads((directory / CONFIG).read_text())
    net = UNet(UNetConfig(**config["unet"]))
    net.load_state_dict(load_file(str(directory / WEIGHTS)))
    return net.to(device).eval(), config
