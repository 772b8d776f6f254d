"""A training run's state at the end of an epoch: saved, so that a stopped run continues from there.

Everything the next epoch depends on is kept: the weights, the optimiser and its schedule, the
random generator that shuffles and augments, where the batch stream stands in its shuffled
pass, the learning curve so far and the seconds spent. Loading it and training on gives the
weights an uninterrupted run with the same seed gives, bit for bit.

The file is ``torch.save`` of tensors and plain values, read back with ``weights_only=True``
(no pickle of code), written to a temporary name and renamed into place, so a kill mid-write
leaves the previous epoch's state. A state whose ``signature`` (configuration, data) differs
from the run's is ignored: the run starts afresh rather than continue another run.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import atomic_write


def data_signature(*arrays: np.ndarray | None) -> str:
    """A short hash of training arrays: a state continues only on the data it was trained on."""
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if a is not None:
            digest.update(str((a.shape, a.dtype.str)).encode())
            digest.update(np.ascontiguousarray(a).data)
    return digest.hexdigest()


def save_state(path: Path, signature: dict, epoch: int, history: list, seconds: float, parts: dict) -> None:
    """Write the state after ``epoch`` to ``path`` atomically.

    Parameters
    ----------
    path : Path
        The state file.
    signature : dict
        What the run is (configuration, data hash): a load with another signature is refused.
    epoch : int
        Epochs finished (1-based count).
    history : list of EpochReport
        The learning curve so far.
    seconds : float
        Training seconds so far.
    parts : dict
        ``state_dict()`` of each stateful part (net, optimiser, schedule, batch stream, generator).
    """
    state = {
        "signature": signature,
        "epoch": epoch,
        "history": [asdict(r) for r in history],
        "seconds": seconds,
        "parts": parts,
    }
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_state(path: Path | None, signature: dict) -> dict | None:
    """The state saved at ``path`` for the run ``signature`` describes, or None (none, unreadable or another run's)."""
    if path is None or not Path(path).is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file: start afresh, as with no state
        return None
    return state if isinstance(state, dict) and state.get("signature") == signature else None


def discard_state(path: Path | None) -> None:
    """Remove a run's state (the run ended: complete, pruned or diverged)."""
    if path is not None:
        Path(path).unlink(missing_ok=True)


class BatchStream:
    """Endless batches of tile indices: shuffled passes over ``n`` tiles, each cut into batches.

    A pass's last batch may be short, as in a plain pass; a fresh order is drawn only when the
    next pass starts, so an epoch of exactly one pass draws what a plain pass drew. Its
    position can be saved and restored (:meth:`state_dict`), so a resumed run draws the same
    batches as one never stopped.
    """

    def __init__(self, n: int, batch_size: int, device: torch.device, generator: torch.Generator):
        self.n, self.batch_size, self.device, self.generator = n, batch_size, device, generator
        self.order, self.pos = None, n

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        if self.pos >= self.n:
            self.order, self.pos = torch.randperm(self.n, generator=self.generator).to(self.device), 0
        batch = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return batch

    def state_dict(self) -> dict:
        return {"order": None if self.order is None else self.order.cpu(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        order = state["order"]
        self.order, self.pos = (None if order is None else order.to(self.device)), state["pos"]


def parts_state(net, opt, scheduler, batches: BatchStream, generator: torch.Generator) -> dict:
    """The state of every part a run carries from one epoch to the next, on the CPU."""
    return {
        "net": {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()},
        "opt": opt.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "batches": batches.state_dict(),
        "generator": generator.get_state(),
    }


def restore_parts(parts: dict, net, opt, scheduler, batches: BatchStream, generator: torch.Generator) -> None:
    """Put the parts of a run back as :func:`parts_state` saved them."""
    net.load_state_dict(parts["net"])
    opt.load_state_dict(parts["opt"])
    if scheduler is not None:
        scheduler.load_state_dict(parts["scheduler"])
    batches.load_state_dict(parts["batches"])
    generator.set_state(parts["generator"])
