"""Helpers the tests share: synthetic tiles and files, tiny studies, worker processes, a test clock, blank figures.

Fixtures live in conftest.py; these are plain functions, classes and constants a test imports
(``from helpers import disc_tiles``: pytest puts tests/ on sys.path).
"""

import io
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from matplotlib.figure import Figure
from tiny_worker import TINY

from data import DataError
from model import plots
from model.train import seeded_net
from model.unet import UNetConfig
from search import space, study
from search.runtime import artifacts, workers
from search.stages import budget, objective

# --- tiles and data files -------------------------------------------------------

N, H, W = 3, 16, 16  # the loader tests' stack: 3 tiles of 16x16


def tile_images(n=N, h=H, w=W, dtype=np.uint8):
    """``n`` tiles of a ramp of grey levels, as an ``X`` array."""
    return (np.arange(n * h * w).reshape(n, h, w) % 256).astype(dtype)


def tile_masks(n=N, h=H, w=W):
    """``n`` soft masks of values from 0 to 1, as a ``y`` array."""
    return np.linspace(0, 1, n * h * w, dtype=np.float32).reshape(n, h, w)


def save_npz(tmp_path, name, **arrays):
    """``arrays`` saved as ``tmp_path/name``: its path."""
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def data_error(path, keyword):
    """pytest.raises for a DataError naming `path` and mentioning `keyword`."""
    return pytest.raises(DataError, match=rf"{re.escape(path.name)}.*{keyword}")


def one_line_error(path, *words):
    """pytest.raises for a one-line DataError naming ``path`` and saying each of ``words``."""
    return pytest.raises(DataError, match=rf"^{re.escape(str(path))}: .*" + ".*".join(map(re.escape, words)))


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


def dots_file(tmp_path, name="dots.npz", n=30, **changes):
    """A dots file of ``n`` disc tiles (X, counts, points, groups of 3 tiles), with arrays changed or removed."""
    arrays = disc_set(n, seed=1)
    arrays = {"X": arrays["X"], "counts": arrays["counts"], "points": arrays["points"], "groups": np.arange(n) // 3}
    arrays.update(changes)
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def disc_labels(shape, centres, radius):
    """Instance labels 1..K of discs of `radius` around `centres`."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for i, (r, c) in enumerate(centres, start=1):
        labels[(yy - r) ** 2 + (xx - c) ** 2 <= radius**2] = i
    return labels


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


# --- nets and maps --------------------------------------------------------------

CPU = torch.device("cpu")
NET = UNetConfig(3, "interp", 4)
SIZE = 64  # the side of the counting tests' probability maps


def tiny_net(seed=0, config=NET):
    """A small U-Net on the CPU, its weights drawn from ``seed``."""
    return seeded_net(config, seed, CPU)


def discs(*centres, radius=6.0, value=1.0, size=SIZE):
    """A (size, size) probability map with filled discs at (row, col) centres."""
    rows, cols = np.mgrid[:size, :size]
    prob = np.zeros((size, size), dtype=np.float32)
    for r, c in centres:
        prob[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = value
    return prob


def as_prob(windows):
    """A 'net' that predicts each pixel from itself alone: any stitching must give it back exactly."""
    return windows.astype(np.float32) / 255


# --- studies --------------------------------------------------------------------

STAGE = ("--finalists", "2", "--folds", "2")  # a finalist stage of 2 finalists in 2 folds


def tiny_args(train, *extra):
    """The study command line of the tiny profile on ``train``, seed 0, then ``extra``."""
    return ["--train", str(train), "--profile", "tiny", "--seed", "0", *extra]


def run_study(train, *extra):
    """Run ``python -m search.study`` on ``train`` with the tiny profile: its exit code."""
    return study.main(tiny_args(train, *extra))


def load(name="cells"):
    """The study ``name`` of studies/``name``.db."""
    return optuna.load_study(study_name=name, storage=f"sqlite:///studies/{name}.db")


def load_runs(name="cells"):
    """The finalist runs of the study ``name``."""
    return optuna.load_study(study_name=f"{name}:finalists", storage=f"sqlite:///studies/{name}.db").trials


def built_study_folder(tmp_path_factory, n_trials, density=False):
    """One tiny finished study of ``n_trials`` trials, for a whole module (training is what costs): its folder.

    With ``density``, a dots study whose warm start (trial 1) trains a density map of sigma 2, run
    as a user in that folder runs it: ``--train train.npz``, a path relative to the folder.
    """
    root = tmp_path_factory.mktemp("built")
    arrays = disc_set(30, seed=1)
    if density:
        np.savez_compressed(root / "train.npz", **{k: arrays[k] for k in ("X", "counts", "points")})
    else:
        np.savez_compressed(root / "train.npz", **{k: arrays[k] for k in ("X", "y", "counts")})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setitem(space.PROFILES, "tiny", TINY)
        if density:  # as a sampled density trial trains
            warm = {**space.warm_start(TINY), space.TARGET: "density", space.SIGMA: 2.0}
            mp.setattr(space, "warm_start", lambda *_: warm)
        train = "train.npz" if density else str(root / "train.npz")
        assert study.main(["--train", train, "--profile", "tiny", "--n-trials", str(n_trials)]) == 0
    return root


def gain_study(best_errors, base_errors, groups):
    """An in-memory study of a reference trial and a best trial with these per-tile validation errors."""
    s = optuna.create_study(study_name="cells")
    s.set_user_attr("val_groups", [int(g) for g in groups])
    s.set_user_attr("folder", "cells-00000000")
    shown = {"value_se": 0.1, "counting_name": "watershed +0", "val_mae_reference_counting": 3.0}
    for errors, attrs in ((base_errors, {"baseline": True}), (best_errors, {})):
        s.add_trial(
            optuna.trial.create_trial(
                value=float(np.abs(errors).mean()),
                params={},
                distributions={},
                user_attrs={**attrs, **shown, "val_errors": [int(e) for e in errors]},
            )
        )
    return s


def fold_runs(run_spread, n_images=42, seed=0, n_folds=3):
    """Out-of-fold errors of two configurations: b worse by 1, give or take ``run_spread`` per fold."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_images), 3)
    folds = groups % n_folds
    a = rng.integers(0, 3, len(groups))  # over-counts: a shift adds to the error as it is
    shifts = np.array([run_spread, -run_spread, 0])[:n_folds]  # mean 0 over 2 or 3 folds
    b = a + 1 + shifts[folds]
    return a, b, groups, folds


# --- worker processes -----------------------------------------------------------

WORKER = Path(__file__).with_name("tiny_worker.py")
PASSWORD = "s3cret-Pw9"  # of the tests' PostgreSQL server: it must never show
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def finished_trials(s):
    """The trials of ``s`` that finished, complete or pruned."""
    return [t for t in s.trials if t.state in workers.FINISHED]


# Seconds a test waits on a subprocess before it kills it: it bounds a hang, not the speed of
# start-up, which on a 2-core machine busy with other work can take minutes.
HANG_BOUND = 600


def start_worker(train, *extra, env=None):
    """A tiny-profile study process whose output is read line by line."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), *tiny_args(train, *extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for_line(proc, text):
    """Read ``proc``'s output up to the first line holding ``text``: that line."""
    for line in proc.stdout:
        if text in line:
            return line
    raise AssertionError(f"worker ended without printing {text!r}")


# --- figures and the clock ------------------------------------------------------


def blank_figures(monkeypatch) -> None:
    """Trials draw blank figures (see :func:`small_figures`)."""
    monkeypatch.setattr(plots, "DPI", 30)
    monkeypatch.setattr(artifacts, "learning_curve_figure", lambda *args: Figure(figsize=(1, 1)))
    monkeypatch.setattr(artifacts, "overlay_figure", lambda *args: Figure(figsize=(1, 1)))


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
