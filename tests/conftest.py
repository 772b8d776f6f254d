"""Shared fixtures: tiny synthetic tile sets and a tiny search profile, so tests run in seconds.

The plain helpers they use are in helpers.py."""

import numpy as np
import pytest
import torch
from helpers import blank_figures, disc_set, disc_tiles
from tiny_worker import TINY  # tests/ is on sys.path: pytest puts a conftest's folder there

from model import plots
from search import space


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
    tested in model/test_plots.py, and a study marked ``real_figures`` draws them end to end.
    """
    if request.node.get_closest_marker("real_figures") is None:
        blank_figures(monkeypatch)
    else:
        monkeypatch.setattr(plots, "DPI", 30)


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
