"""Where the net runs and at which precision: device choice, tiles as tensors, bf16 or fp32.

Shared by training (:mod:`model.train`) and inference (:mod:`model.infer`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

PRECISIONS = ("auto", "bf16", "fp32")


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; otherwise the named device.

    Raises ValueError for an unknown name or a CUDA device that is not there.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available here")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r} (use auto, cpu, cuda or cuda:N)")
    return device


PRECISION_ENV = "CELLCOUNT_PRECISION"  # fp32 or bf16: overrides "auto" (see resolve_precision)


def to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N,H,W) uint8 or float in [0,1] -> (N,1,H,W) float32 on ``device``."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    return x.unsqueeze(1).to(device)


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (emulated bf16 on older CPUs is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` becomes ``"bf16"`` where native on ``device``, else ``"fp32"``.

    ``CELLCOUNT_PRECISION=fp32`` (or ``bf16``) in the environment overrides ``"auto"``: to
    train as a CPU without native bf16 does, e.g. to measure how long a study takes there.
    """
    if precision == "auto":
        forced = os.environ.get(PRECISION_ENV, "")
        if forced in ("bf16", "fp32"):
            return forced
        return "bf16" if bf16_native(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str):
    """bf16 autocast (no gradient scaler needed, unlike fp16), or plain fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
