"""The reference's U-Net, with its depth, decoder upsampling and width made configurable."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

DEPTHS = (3, 4)
UPSAMPLE_TYPES = ("interp", "transpose")


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a U-Net.

    Parameters
    ----------
    depth : int
        Number of down blocks (3 or 4; the reference uses 4).
    upsample : str
        ``"interp"``: nearest Upsample + 3x3 conv + ReLU (the reference's choice);
        ``"transpose"``: ConvTranspose2d with stride 2.
    base : int
        Channels of the first block; each down block doubles them (the reference uses 64).
    """

    depth: int = 4
    upsample: str = "interp"
    base: int = 64

    def __post_init__(self):
        if self.depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS}, got {self.depth!r}")
        if self.upsample not in UPSAMPLE_TYPES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_TYPES}, got {self.upsample!r}")
        if not (isinstance(self.base, int) and self.base >= 1):
            raise ValueError(f"base must be a positive integer, got {self.base!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    """Two size-preserving 3x3 convolutions with ReLU (no batch norm, as in the reference)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ReLU(inplace=True),
    )


def up_layer(c_in: int, c_out: int, kind: str) -> nn.Module:
    """Double the resolution and halve the channels."""
    if kind == "interp":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.ReLU(inplace=True),
        )
    return nn.ConvTranspose2d(c_in, c_out, 2, stride=2)


class UNet(nn.Module):
    """U-Net mapping a (N,1,H,W) image in [0,1] to (N,1,H,W) mask logits.

    H and W must be multiples of ``2**depth``.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        widths = [config.base * 2**i for i in range(config.depth + 1)]
        self.down = nn.ModuleList(double_conv(c_in, c_out) for c_in, c_out in zip([1] + widths[:-2], widths[:-1]))
        self.bottom = double_conv(widths[-2], widths[-1])
        self.up = nn.ModuleList(
            up_layer(widths[i + 1], widths[i], config.upsample) for i in reversed(range(config.depth))
        )
        self.merge = nn.ModuleList(double_conv(2 * widths[i], widths[i]) for i in reversed(range(config.depth)))
        self.head = nn.Conv2d(widths[0], 1, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([skip, up(x)], dim=1))
        return self.head(x)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
