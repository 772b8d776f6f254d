"""Fit a U-Net on tiles held in memory, reporting validation count-MAE after every epoch.

The whole data set sits on the device as tensors: an epoch is a shuffled walk over it in
batches, with flips/rotations drawn on the device. Nothing here knows about Optuna; a search
plugs in through ``on_epoch`` (raise from it to stop training).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from model.device import PRECISIONS, autocast, resolve_precision, to_tensor
from model.infer import DENSITY_SCALE, output_map, predict
from model.resume import BatchStream, data_signature, load_state, parts_state, restore_parts, save_state
from model.unet import UNet, UNetConfig

LOSSES = ("bce", "bce_dice", "mse")
WARM_UP_STEPS = 3  # steps of an epoch left out of its steady time
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Parameters
    ----------
    lr : float
        Adam learning rate (the reference's: 2e-4).
    epochs : int
        Training epochs (the reference's: 45); one epoch is :func:`epoch_steps` optimiser steps.
    batch_size : int
        Tiles per optimiser step (the reference's: 16).
    min_epoch_steps : int
        The fewest optimiser steps in an epoch. An epoch is one pass over the training tiles,
        or this many steps where a pass is shorter (the batches then run on into the next
        shuffled pass), so a small data set trains as long as a large one. 1: always one pass.
    loss : str
        ``"bce"`` (BCE with logits on the soft masks, the reference's), ``"bce_dice"`` (plus soft
        Dice), or ``"mse"``: the net's raw output regresses a density map (see :func:`output_map`).
    augment : bool
        Random flips and 90-degree rotations of each training tile.
    schedule : str
        ``"constant"`` learning rate (the reference's) or ``"cosine"``: a half-cosine decay from
        ``lr`` to 0 over all steps, so the last epoch, the one kept, is not a noisy one.
    seed : int
        Seeds weight initialisation, shuffling and augmentation.
    precision : str
        ``"bf16"`` autocast, ``"fp32"``, or ``"auto"``: bf16 where the hardware runs it
        natively (CUDA, and CPUs with AVX512-BF16 or AMX), fp32 elsewhere.
    """

    lr: float = 2e-4
    epochs: int = 45
    batch_size: int = 16
    min_epoch_steps: int = 1
    loss: str = "bce"
    augment: bool = False
    schedule: str = "constant"
    seed: int = 0
    precision: str = "auto"

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if min(self.epochs, self.batch_size, self.min_epoch_steps) < 1:
            raise ValueError("epochs, batch_size and min_epoch_steps must be at least 1")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EpochReport:
    """What one epoch measured."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_mae: float
    seconds: float
    # The epoch's seconds without the one-off set-up of its first steps (kernels chosen, memory
    # grown: a process's first epoch is 1.1-1.2x the next): what later epochs will take.
    steady_seconds: float = math.nan
    restored: bool = False  # an epoch of a resumed run, finished before it stopped


@dataclass
class FitResult:
    """The trained weights (those of the last epoch) and the whole learning curve."""

    state_dict: dict
    val_prob: np.ndarray | None  # (N,H,W) validation probabilities (densities: mse) of the last epoch
    history: list[EpochReport] = field(default_factory=list)
    train_seconds: float = 0.0


def dihedral(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple:
    """Apply one of the 8 flips/rotations, drawn per tile, to images and masks alike.

    Draws come from a CPU generator so CPU and GPU runs see the same transforms.
    """
    n = x.shape[0]
    flips = torch.rand(3, n, generator=generator).lt(0.5).to(x.device)[:, :, None, None, None]
    for flip, op in zip(flips, (lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.transpose(-1, -2))):
        x, y = torch.where(flip, op(x), x), torch.where(flip, op(y), y)
    return x, y


def loss_fn(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """BCE with logits on the soft mask, optionally plus a soft Dice term; or MSE on the scaled density."""
    if kind == "mse":
        return F.mse_loss(logits.float(), target * DENSITY_SCALE)
    loss = F.binary_cross_entropy_with_logits(logits.float(), target)
    if kind == "bce_dice":
        prob = torch.sigmoid(logits.float())
        inter = (prob * target).sum()
        loss = loss + 1 - (2 * inter + 1) / (prob.sum() + target.sum() + 1)
    return loss


def make_scheduler(opt: torch.optim.Optimizer, config: TrainConfig, steps: int):
    """The learning-rate schedule over ``steps`` optimiser steps, or None for a constant rate."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return None


def train_step(net, opt, xb, yb, config: TrainConfig, precision: str, generator) -> torch.Tensor:
    """One optimiser step on a batch (augmented first if asked); returns the detached loss."""
    if config.augment:
        xb, yb = dihedral(xb, yb, generator)
    with autocast(xb.device, precision):
        logits = net(xb)
    loss = loss_fn(logits, yb, config.loss)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def epoch_steps(n: int, config: TrainConfig) -> int:
    """Optimiser steps in one epoch over ``n`` training tiles: a pass, or ``config.min_epoch_steps`` if more."""
    return max(config.min_epoch_steps, -(-n // config.batch_size))


def train_epoch(
    net, opt, scheduler, x: torch.Tensor, y: torch.Tensor, batches, config: TrainConfig, precision: str, generator
) -> tuple[float, float]:
    """One epoch of :func:`epoch_steps` steps from ``batches``, stepping the schedule.

    Returns the mean loss and the epoch's steady seconds: the time of its steps after the first
    :data:`WARM_UP_STEPS`, scaled to all its steps.
    """
    net.train()
    total = torch.zeros((), device=x.device)
    seen, steps = 0, epoch_steps(len(x), config)
    started = warm = time.perf_counter()
    for i, idx in enumerate(itertools.islice(batches, steps)):
        if i == WARM_UP_STEPS:
            warm = synced_clock(x.device)
        # Summed on the device: no host sync per step.
        total += train_step(net, opt, x[idx], y[idx], config, precision, generator) * len(idx)
        seen += len(idx)
        if scheduler is not None:
            scheduler.step()
    loss, ended = float(total) / seen, synced_clock(x.device)
    if steps <= WARM_UP_STEPS:
        return loss, ended - started
    return loss, (ended - warm) * steps / (steps - WARM_UP_STEPS)


def synced_clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has done its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def fit(
    net: UNet,
    config: TrainConfig,
    train_images: np.ndarray,
    train_masks: np.ndarray,
    val_images: np.ndarray | None = None,
    val_masks: np.ndarray | None = None,
    score_fn: Callable[[np.ndarray], float] | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    every_epoch: bool = True,
    state_path: Path | None = None,
) -> FitResult:
    """Train ``net`` (on its device) for ``config.epochs`` epochs; keep the last epoch's weights, not the
    best-scoring epoch's (picking the luckiest one makes the validation score optimistic).

    Parameters
    ----------
    train_images, train_masks : ndarray
        (N,H,W) uint8 images and float soft masks in [0,1] (density maps for ``loss="mse"``).
    val_images, val_masks : ndarray, optional
        Validation tiles, predicted after every epoch, or after the last only if not
        ``every_epoch`` (the others report NaN): a run nothing prunes spends its time training.
    score_fn : callable, optional
        Maps (N,H,W) validation probabilities (densities) to each :class:`EpochReport`'s score.
    on_epoch : callable, optional
        Called with each :class:`EpochReport`, first with a resumed run's finished ones
        (``restored``); an exception raised there stops training (this is how a search prunes).
    state_path : Path, optional
        The run's state, saved after every epoch; training continues from a state of this run there.
    """
    device = next(net.parameters()).device
    precision = resolve_precision(config.precision, device)
    generator = torch.Generator().manual_seed(config.seed)
    x_train, y_train = to_tensor(train_images, device), to_tensor(train_masks, device)
    val = None if val_images is None else (to_tensor(val_images, device), to_tensor(val_masks, device))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    scheduler = make_scheduler(opt, config, config.epochs * epoch_steps(len(x_train), config))
    batches = BatchStream(len(x_train), config.batch_size, device, generator)
    parts = (net, opt, scheduler, batches, generator)
    signature = run_signature(net, config, precision, train_images, train_masks)
    (history, seconds), prob = resume(state_path, signature, parts, on_epoch), None
    for epoch in range(len(history) + 1, config.epochs + 1):
        t0 = time.perf_counter()
        train_loss, steady = train_epoch(net, opt, scheduler, x_train, y_train, batches, config, precision, generator)
        val_loss, val_score, t1 = float("nan"), float("nan"), time.perf_counter()
        if val is not None and (every_epoch or epoch == config.epochs):
            val_loss, prob = validate(net, *val, config.loss, precision)
            val_score = float(score_fn(prob)) if score_fn is not None else float("nan")
        ended = time.perf_counter()
        report = EpochReport(epoch, train_loss, val_loss, val_score, ended - t0, steady + ended - t1)
        history.append(report)
        seconds += report.seconds
        if state_path is not None:  # before on_epoch, which may stop the run here
            save_state(state_path, signature, epoch, history, seconds, parts_state(*parts))
        if on_epoch is not None:
            on_epoch(report)
    if prob is None and val is not None:  # resumed after its last epoch: its maps were not saved
        prob = validate(net, *val, config.loss, precision)[1]
    state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
    return FitResult(state, prob, history, seconds)


def run_signature(net: UNet, config: TrainConfig, precision: str, images: np.ndarray, targets: np.ndarray) -> dict:
    """What a saved state must match to be continued: the net, the training and the data."""
    return {
        "net": asdict(net.config),
        "train": {**config.to_dict(), "precision": precision},
        "data": data_signature(images, targets),
    }


def resume(state_path: Path | None, signature: dict, parts: tuple, on_epoch) -> tuple[list, float]:
    """Load the run's saved state into ``parts``; returns its learning curve and training seconds so far.

    ``on_epoch`` sees each finished epoch's report again, marked ``restored``.
    """
    state = load_state(state_path, signature)
    if state is None:
        return [], 0.0
    restore_parts(state["parts"], *parts)
    history = [EpochReport(**{**r, "restored": True}) for r in state["history"]]
    for report in history:
        if on_epoch is not None:
            on_epoch(report)
    return history, state["seconds"]


def validate(net, x_val: torch.Tensor, y_val: torch.Tensor, loss: str, precision: str) -> tuple[float, np.ndarray]:
    """Validation loss and (N,H,W) probabilities or densities (:func:`output_map`), with no autograd."""
    logits = predict(net, x_val, precision)
    return float(loss_fn(logits, y_val, loss)), output_map(logits, loss)[:, 0].cpu().numpy()


def seeded_net(config: UNetConfig, seed: int, device: torch.device) -> UNet:
    """A freshly initialised U-Net, the same weights for the same seed on any device."""
    torch.manual_seed(seed)
    # Channels-last lets oneDNN / cuDNN pick their fast convolutions (1.6x on the CPU here).
    return UNet(config).to(device, memory_format=torch.channels_last)
