"""Run a trained net: what its output means, batched inference, and test-time augmentation."""

from __future__ import annotations

import numpy as np
import torch

from model.device import autocast, resolve_precision, to_tensor

# The "mse" loss regresses a density map times this, as the counting literature does: a
# density is about 0.01-0.05 at a cell, and its squared error unscaled gives tiny gradients.
DENSITY_SCALE = 100.0


def output_map(logits: torch.Tensor, loss: str) -> torch.Tensor:
    """What the net's output means: nucleus probabilities, or for ``loss="mse"`` a density map.

    A density net's raw output, scaled back, so a tile's map sums to its count.
    """
    return logits / DENSITY_SCALE if loss == "mse" else torch.sigmoid(logits)


@torch.inference_mode()
def predict(net: torch.nn.Module, x: torch.Tensor, precision: str = "fp32", batch_size: int = 64) -> torch.Tensor:
    """Mask logits for (N,1,H,W) images, in large batches with no autograd; returns float32."""
    net.eval()
    device = next(net.parameters()).device
    with autocast(device, precision):
        out = [net(x[i : i + batch_size].to(device)).float() for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def predict_prob(
    net: torch.nn.Module, images: np.ndarray, *, loss: str, tta: bool = False, precision: str = "auto"
) -> np.ndarray:
    """(N,H,W) nucleus probabilities for uint8 images, or density maps for a net trained with ``loss="mse"``.

    ``loss`` is the one the net trained with (its checkpoint's ``train.loss``), and has no
    default: a density net's output read as logits counts hundreds of cells per tile.
    With ``tta`` the maps are averaged over the 8 flips/rotations of each tile, each mapped
    back before averaging. ``precision`` and ``loss`` as in :class:`model.train.TrainConfig`.
    """
    device = next(net.parameters()).device
    precision = resolve_precision(precision, device)
    x = to_tensor(images, device)
    views = [(k, flip) for k in range(4) for flip in (False, True)] if tta else [(0, False)]
    total = 0
    for k, flip in views:
        view = torch.rot90(x, k, dims=(-2, -1))
        prob = output_map(predict(net, view.flip(-1) if flip else view, precision), loss)
        total = total + torch.rot90(prob.flip(-1) if flip else prob, -k, dims=(-2, -1))
    return (total / len(views))[:, 0].cpu().numpy()
