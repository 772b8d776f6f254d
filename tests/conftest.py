"""Shared fixtures: tiny synthetic tile sets and a tiny search profile, so tests run in seconds."""

import io
import time
import zipfile

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from tiny_worker import TINY  # tests/ is on sys.path: pytest puts a conftest's folder there

from model import plots
from search import artifacts, budget, objective, space, study, workers


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny nets run far faster on one thread: two threads on two busy cores thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def small_figures(monkeypatch, request):
    """Trial figures at a low resolution; blank ones in studies, unless a test is marked ``real_figures``.

    Drawing a trial's two figures costs more than training a tiny net: the figures themselves are
    tested in test_artifacts.py, and a study marked ``real_figures`` draws them end to end.
    """
    monkeypatch.setattr(plots, "DPI", 30)
    if request.node.get_closest_marker("real_figures") is None:
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


@pytest.fixture
def tiny_files(tmp_path):
    """Paths of a tiny train archive (X, y, counts), test archive and test counts CSV."""
    X, y, counts = disc_tiles(30, seed=1)
    Xt, _, ct = disc_tiles(6, seed=2)
    train, test, truth = tmp_path / "train.npz", tmp_path / "test.npz", tmp_path / "truth.csv"
    np.savez_compressed(train, X=X, y=y, counts=counts)
    np.savez_compressed(test, X=Xt)
    truth.write_text("index,count\n" + "".join(f"{i},{c}\n" for i, c in enumerate(ct)))
    return train, test, truth


@pytest.fixture
def tiny_dots(tmp_path):
    """A dots file of the tiny training tiles: ``X``, ``counts`` and ``points``, no masks ``y``."""
    arrays = disc_set(30, seed=1)
    path = tmp_path / "dots.npz"
    np.savez_compressed(path, X=arrays["X"], counts=arrays["counts"], points=arrays["points"])
    return path


@pytest.fixture
def tiny_profile(monkeypatch):
    """A 'tiny' profile (2-channel U-Net, 1-2 epochs) selectable with --profile tiny."""
    monkeypatch.setitem(space.PROFILES, "tiny", TINY)
    return TINY


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder, so studies/ is created there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


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
