"""Helpers the tests share: tiny synthetic tiles, an oversized-header archive, a test clock, blank figures.

Fixtures live in conftest.py; these are plain functions and classes a test imports
(``from helpers import disc_tiles``: pytest puts tests/ on sys.path).
"""

import io
import time
import zipfile

import numpy as np
from matplotlib.figure import Figure

from model import plots
from search import study
from search.runtime import artifacts, workers
from search.stages import budget, objective


def blank_figures(monkeypatch) -> None:
    """Trials draw blank figures (see :func:`small_figures`)."""
    monkeypatch.setattr(plots, "DPI", 30)
    monkeypatch.setattr(artifacts, "learning_curve_figure", lambda *args: Figure(figsize=(1, 1)))
    monkeypatch.setattr(artifacts, "overlay_figure", lambda *args: Figure(figsize=(1, 1)))


def disc_set(n, size=32, seed=0):
    """Dark tiles with a few bright discs, as the arrays of a training npz: ``X``, ``y``, ``counts``, ``points``.

    ``points`` holds each disc's centre as a row ``(tile, row, col)``, the dots of a dots file.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size), np.uint8)
    masks = np.zeros((n, size, size), np.float32)
    counts = np.zeros(n, np.int32)
    points = []
    for i in range(n):
        counts[i] = rng.integers(0, 4)
        for _ in range(counts[i]):
            r, c = rng.integers(6, size - 6, size=2)
            masks[i] = np.maximum(masks[i], ((yy - r) ** 2 + (xx - c) ** 2 <= 9).astype(np.float32))
            points.append((i, r, c))
        images[i] = np.clip(masks[i] * 180 + rng.normal(20, 5, (size, size)), 0, 255).astype(np.uint8)
    return {"X": images, "y": masks, "counts": counts, "points": np.array(points, np.float32).reshape(-1, 3)}


def disc_tiles(n, size=32, seed=0):
    """Dark tiles with a few bright discs; returns images, soft masks and true counts."""
    arrays = disc_set(n, size, seed)
    return arrays["X"], arrays["y"], arrays["counts"]


def header_bomb(path, shape=(2**34, 32, 32), header=None):
    """An npz of a few hundred bytes whose ``X.npy`` header declares ``shape`` of uint8 (16 TiB by default).

    ``header`` replaces the whole ``X.npy`` member. A small valid ``y`` sits beside it.
    """
    if header is None:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
        header = buf.getvalue()
    y = io.BytesIO()
    np.save(y, np.zeros((1, 16, 16), np.float32))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", header)
        archive.writestr("y.npy", y.getvalue())
    return path


class Clock:
    """Stands in for ``time`` where the study reads it: a clock a test moves on by ``skew`` seconds."""

    def __init__(self):
        self.skew = 0.0

    def monotonic(self):
        return time.monotonic() + self.skew

    @staticmethod
    def sleep(seconds):
        time.sleep(seconds)


def use_clock(monkeypatch, clock):
    """Every module that reads the time for the study's deadlines reads ``clock``."""
    for module in (study, objective, workers, budget):
        monkeypatch.setattr(module, "time", clock)
