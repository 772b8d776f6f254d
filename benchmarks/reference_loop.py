"""A faithful training epoch of the reference notebook: the baseline the harness is compared against.

This is *not* product code. It reproduces what the original student's script did per epoch
(the published script of the original write-up; its details are listed in the README):

* a plain ``Dataset`` whose ``__getitem__`` returns ``torch.tensor(x)/255`` and the mask, one
  item at a time (a 1-channel axis is added, which the notebook's net also needed);
* a ``DataLoader`` with batch 16 and ``shuffle=True`` (no workers, the default);
* every batch copied to the device inside the loop; fp32 throughout, default (NCHW) layout;
* Adam, ``BCEWithLogitsLoss``, forward / zero_grad / backward / step;
* after EVERY epoch, with gradients disabled, a full pass over the whole training set and
  the validation set just to compute the average losses that the notebook printed (no count
  metric during training).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class CellDataset(Dataset):
    """The notebook's per-item dataset: normalisation and type conversion in ``__getitem__``."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i):
        x = torch.tensor(self.X[i]).unsqueeze(0) / 255
        y = torch.tensor(self.y[i], dtype=torch.float32).unsqueeze(0)
        return x, y


def reference_loaders(train_images, train_masks, val_images, val_masks, batch_size: int = 16, seed: int = 0):
    """Training loader (shuffled) and validation loader, as the notebook built them."""
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(CellDataset(train_images, train_masks), batch_size=batch_size, shuffle=True, generator=g)
    val = DataLoader(CellDataset(val_images, val_masks), batch_size=batch_size)
    return train, val


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def average_loss(net: nn.Module, loader: DataLoader, criterion, device: torch.device) -> float:
    """The notebook's evaluation pass: gradients off, per-batch copy, mean loss over the set."""
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            total += criterion(net(x), y).item() * len(x)
            n += len(x)
    return total / n


def reference_epoch(
    net: nn.Module, opt: torch.optim.Optimizer, train_loader: DataLoader, val_loader: DataLoader, device: torch.device
) -> dict:
    """One epoch of the notebook's loop; returns the losses and the seconds of each of its three parts."""
    criterion = nn.BCEWithLogitsLoss()
    _sync(device)
    t0 = time.perf_counter()
    net.train()
    for x, y in train_loader:
        x, y = x.to(device), y.to(device)
        out = net(x)
        loss = criterion(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    t1 = time.perf_counter()
    train_loss = average_loss(net, train_loader, criterion, device)
    _sync(device)
    t2 = time.perf_counter()
    val_loss = average_loss(net, val_loader, criterion, device)
    _sync(device)
    t3 = time.perf_counter()
    return {
        "train_loss": train_loss,
        "val_loss": val_loss,
        "train_s": t1 - t0,
        "train_eval_s": t2 - t1,
        "val_eval_s": t3 - t2,
        "seconds": t3 - t0,
    }


def reference_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimiser step of the notebook's loop on a batch already on the device (for FLOP counting)."""
    loss = nn.functional.binary_cross_entropy_with_logits(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss
