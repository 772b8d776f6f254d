"""The search space and the profiles: every searched parameter is defined here, once.

The five parameters of the original brief are ``lr``, ``epochs``, ``depth``, ``upsample``
and ``offset``; ``schedule`` and ``augment`` widen the training side. The counting setting
(counter, its parameters and the offset) is sampled only with ``--objective sampled``; by
default (``tuned``) it is chosen after training on the validation predictions, so TPE spends
its trials on training and the dashboard shows, as user attributes, the counting that
scored each trial. ``reference_config`` is the reference write-up's own configuration, run first in
every new study so the gain of the search is visible.

A file with cell centres also samples ``target``: ``"disks"`` of ``target_radius`` at them
(BCE, thresholding counters), a ``"density"`` map of ``target_sigma`` (MSE, counted by its
sum) and, beside masks (``"masks+dots"``), the ``"mask"``. A masks-only file never samples one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import optuna

from model.train import SCHEDULES
from model.unet import DEPTHS, UPSAMPLE_TYPES

LR_RANGE = (1e-4, 1e-2)  # log scale; the reference write-up tried 1e-4..5e-4 by hand
AUGMENT = (False, True)
# Not searched (the reference's values): few trials cannot afford dimensions that barely matter.
BATCH_SIZE = 16
LOSS = "bce"
# The training length of an epoch, in optimiser steps: one pass over the embedded set's training
# split at batch 16 (1144-1151 tiles for any split seed: 72 steps). A smaller data set runs on
# into further shuffled passes for as many steps (as nnU-Net fixes its iterations per epoch), so
# the searched epochs mean the same training everywhere; a larger one still makes a whole pass.
EPOCH_STEPS = 72
# Added to every count (convention in model/count.py). Components undercount by 1.6-1.8 on
# perfect masks of the embedded data (touching nuclei merge), so +2 must be reachable; a
# splitting counter can over-split, so -1 is too.
OFFSETS = (-1, 2)
# Each counter's parameter values. In tuned mode all of them are scored after training on
# the trial's validation predictions, which costs no training.
COUNTER_GRID = {
    "components": {"threshold": (0.4, 0.5, 0.6)},
    "watershed": {
        "threshold": (0.4, 0.5, 0.6),
        "min_distance": (2, 3),
        "min_area": (5, 10),
        "edge_fraction": (0.0, 0.2, 0.3),
    },
}
# The reference write-up's count: connected components of p > 0.5, background label included.
REFERENCE_COUNTING = {"counter": "components", "threshold": 0.5, "offset": 1}
REFERENCE_EPOCHS = 45
# Files with cell centres only (dots, or masks and points). The radius (px) of the disk drawn at
# each centre: the embedded set's nuclei are 8-14 px across at the importer's scale; a disk a bit
# smaller than the cell keeps neighbours apart for the counters, so 2..5 px is searched.
RADIUS = "target_radius"
TARGET_RADII = (2, 5)
DEFAULT_RADIUS = 3  # the warm start's: mid-range, about a small nucleus
# Disks (probabilities; touching cells merge), a density map (a unit Gaussian per centre, regressed
# and summed) or, beside masks, the soft mask: the reference's target (the write-up's), disks the warm
# start's. On the embedded test tiles the warm start from radius-3 disks scored 1.810 against 2.027
# from the masks in one run of 3 seeds, 1.988 against 2.002 in another (BENCHMARKS.md, "Training
# targets"), while validation ranked them otherwise: the finalist stage judges a centre-target trial.
TARGET = "target"
CENTRE_TARGETS = ("disks", "density")
TARGETS = {"dots": CENTRE_TARGETS, "masks+dots": ("mask", *CENTRE_TARGETS)}
DENSITY_LOSS = "mse"
# The Gaussian's sigma (px) of a density target: 1 is about a dot, 4 about a whole embedded nucleus.
SIGMA = "target_sigma"
TARGET_SIGMAS = (1.0, 4.0)
DEFAULT_SIGMA = 2.0  # the warm start's on crowded dots: mid-range, about half a small nucleus
# A dots file is crowded when more than this share of its dots has a neighbour closer than a
# default disk's diameter (2 r + 1 px), where those disks touch and count as one cell; the warm
# start then trains the density map made for such data. Measured (BENCHMARKS.md, "Crowded dots"):
# the embedded set's dots 7.6% and mbm-dots at scale 0.6 0.9% (disks count both well), the
# crowded synthetic set's far above, where disks under-count every image.
CROWDED_SHARE = 0.2


@dataclass(frozen=True)
class Profile:
    """Network width, epoch range and default budget for one kind of machine."""

    name: str
    base: int  # U-Net channels of the first block
    epochs: tuple[int, int]  # searched range, inclusive
    timeout: float  # default wall-clock budget of one run, search and finalists together, seconds
    n_trials: int  # default number of search trials
    finalists: int = 2  # configurations judged out of fold after the search (best, reference, runners-up)
    folds: int = 2  # cross-fitting folds of the training images: runs per finalist, each with a fresh seed
    epoch_steps: int = EPOCH_STEPS  # the fewest optimiser steps in an epoch (TrainConfig.min_epoch_steps)


PROFILES = {
    # The reference's full-size net, for a GPU: room for a runner-up and a third fold.
    "full": Profile("full", base=64, epochs=(10, 60), timeout=4 * 3600, n_trials=40, finalists=3, folds=3),
    # A small net and short trials: search and finalists within 20 minutes on 2 CPU cores. Two
    # folds cost what two seeds per finalist cost before, and judge on the training images.
    "quick": Profile("quick", base=8, epochs=(4, 16), timeout=18 * 60, n_trials=40, finalists=2, folds=2),
}


def reference_epochs(profile: Profile) -> int:
    """The reference's 45 epochs (of the full profile's range) scaled to ``profile``'s range."""
    full = PROFILES["full"].epochs
    scale = (profile.epochs[1] - profile.epochs[0]) / (full[1] - full[0])
    return round(profile.epochs[0] + (REFERENCE_EPOCHS - full[0]) * scale)


def with_radius(params: dict, annotation: str) -> dict:
    """``params`` with disks of the default radius added when the file has centres (a mask study's unchanged)."""
    return {**params, TARGET: "disks", RADIUS: DEFAULT_RADIUS} if annotation in TARGETS else params


def trains_density(params: dict) -> bool:
    """Whether trial parameters train a density map (a ``target`` at centres), not probabilities."""
    return params.get(TARGET) == "density"


def trains_from_centres(params: dict) -> bool:
    """Whether trial parameters train a target drawn at the cell centres (disks or density), not masks."""
    return params.get(TARGET) in CENTRE_TARGETS


def reference_config(profile: Profile, mode: str = "tuned", annotation: str = "masks") -> dict:
    """The reference's configuration as trial parameters (its counting too when ``mode`` samples it).

    The reference trained on masks: on a file with masks it still does (``target`` ``"mask"``
    when centres are searched too); a dots study gives it disks of the default radius.
    """
    params = {
        "lr": 2e-4,
        "epochs": reference_epochs(profile),
        "depth": 4,
        "upsample": "interp",
        "schedule": "constant",
        "augment": False,
    }
    params = {**params, TARGET: "mask"} if annotation == "masks+dots" else with_radius(params, annotation)
    return {**params, **REFERENCE_COUNTING} if mode == "sampled" else params


def merge_distance() -> int:
    """Pixels under which two dots' default disks touch: the crowding rule's distance."""
    return 2 * DEFAULT_RADIUS + 1


def is_crowded(share: float) -> bool:
    """Whether dots of which ``share`` have a neighbour within :func:`merge_distance` are crowded."""
    return share > CROWDED_SHARE


def warm_start(profile: Profile, annotation: str = "masks", crowded: bool = False) -> dict:
    """A strong starting point, run second: cosine decay from a higher rate, augmentation, every epoch.

    A CPU study affords only a few trials; starting TPE from a known-good region (Optuna's
    ``enqueue_trial``) beats spending them all on random start-up points. A study of a file
    with centres (dots, or masks and dots) trains disks of the default radius at them, or,
    when they are ``crowded`` (:data:`CROWDED_SHARE`), a density map of the default sigma:
    disks would merge there.
    """
    params = {
        "lr": 2e-3,
        "epochs": profile.epochs[1],
        "depth": 4,
        "upsample": "interp",
        "schedule": "cosine",
        "augment": True,
    }
    if annotation in TARGETS and crowded:
        return {**params, TARGET: "density", SIGMA: DEFAULT_SIGMA}
    return with_radius(params, annotation)


def suggest(trial: optuna.Trial, profile: Profile, mode: str = "tuned", annotation: str = "masks") -> dict:
    """Sample one configuration: the target only with centres, the counting only when ``mode`` is ``"sampled"``.

    A masks-only study never samples a target: it draws exactly what it drew before centres could train.
    A density trial's sampled counting is the density counter with a sampled offset.
    """
    params = {
        "lr": trial.suggest_float("lr", *LR_RANGE, log=True),
        "epochs": trial.suggest_int("epochs", *profile.epochs),
        "depth": trial.suggest_categorical("depth", DEPTHS),
        "upsample": trial.suggest_categorical("upsample", UPSAMPLE_TYPES),
        "schedule": trial.suggest_categorical("schedule", SCHEDULES),
        "augment": trial.suggest_categorical("augment", AUGMENT),
    }
    if annotation in TARGETS:
        params[TARGET] = trial.suggest_categorical(TARGET, TARGETS[annotation])
        if trains_density(params):
            params[SIGMA] = trial.suggest_float(SIGMA, *TARGET_SIGMAS)
        elif params[TARGET] == "disks":
            params[RADIUS] = trial.suggest_int(RADIUS, *TARGET_RADII)
    if mode == "sampled" and trains_density(params):
        params["offset"] = trial.suggest_int("offset", *OFFSETS)
    elif mode == "sampled":
        counter = trial.suggest_categorical("counter", tuple(COUNTER_GRID))
        params["counter"] = counter
        params["offset"] = trial.suggest_int("offset", *OFFSETS)
        for name, values in COUNTER_GRID[counter].items():
            params[name] = trial.suggest_categorical(name, values)
    return params


def annotation_text(annotation: str) -> str:
    """What a study trains from, in words: for its first lines and its note."""
    centres = (
        f"disks of radius {TARGET_RADII[0]}-{TARGET_RADII[1]} px ({RADIUS}) drawn at the centres, or density "
        f"maps of Gaussians of sigma {TARGET_SIGMAS[0]:g}-{TARGET_SIGMAS[1]:g} px ({SIGMA})"
    )
    if annotation == "dots":
        return f"dots ('points', no masks): {centres} ({TARGET}, searched; warm start disks of radius {DEFAULT_RADIUS})"
    if annotation != "masks+dots":
        return "masks ('y', soft masks)"
    return (
        f"masks ('y') and cell centres ('points'): {TARGET} searched among the soft masks, {centres}; the reference "
        f"trains on the masks, the warm start on disks of radius {DEFAULT_RADIUS}; validation and held-out images "
        "have ranked the targets differently, so the best centre-target trial is always a finalist, judged out of fold"
    )


def fold_profile(profile: Profile, n_search_tiles: int) -> Profile:
    """``profile`` for a finalist's fold run: its epochs as many steps as its search trial's.

    A fold run trains on fewer tiles than the search trial (one fold is held out); a pass over
    them is shorter, so each epoch runs on for the steps of a pass over the search's tiles.
    """
    return replace(profile, epoch_steps=max(profile.epoch_steps, -(-n_search_tiles // BATCH_SIZE)))


def target_text(params: dict) -> str:
    """A trial's training target in words, e.g. ``disks of radius 3 px``."""
    if not trains_from_centres(params):
        return "the soft masks"
    if trains_density(params):
        return f"density maps of Gaussians of sigma {params[SIGMA]:.2f} px at the centres"
    return f"disks of radius {params[RADIUS]} px at the centres"


def train_options(params: dict, profile: Profile) -> dict:
    """The ``TrainConfig`` keyword arguments of trial parameters trained in ``profile``."""
    return {
        "lr": params["lr"],
        "epochs": params["epochs"],
        "min_epoch_steps": profile.epoch_steps,
        "schedule": params["schedule"],
        "augment": params["augment"],
        "batch_size": BATCH_SIZE,
        "loss": DENSITY_LOSS if trains_density(params) else LOSS,
    }


def with_offsets(setting: dict) -> list[dict]:
    """The counting setting with each offset of the space."""
    return [{**setting, "offset": o} for o in range(OFFSETS[0], OFFSETS[1] + 1)]


def monitor_settings(density: bool = False) -> list[dict]:
    """A few counting settings whose best validation MAE tracks the tuned objective every epoch.

    Every counter at its defaults, each with every offset: a trial whose net is good is not
    pruned merely because one counter suits it badly. A density net's: its counter's grid.
    """
    if density:
        return counting_grid(density)
    return [s for counter in COUNTER_GRID for s in with_offsets({"counter": counter})]


def counting_grid(density: bool = False) -> list[dict]:
    """Every counting setting (counter, its parameters, offset) of a probability map, or of a density map.

    A density map is counted by its sum (the ``density`` counter, offsets only); thresholds mean
    nothing on it, nor does a sum on probabilities.
    """
    if density:
        return with_offsets({"counter": "density"})
    grid = []
    for counter, values in COUNTER_GRID.items():
        settings = [{}]
        for name, options in values.items():
            settings = [{**s, name: v} for s in settings for v in options]
        for s in settings:
            grid += with_offsets({"counter": counter, **s})
    return grid


def counting_of(params: dict) -> dict:
    """The sampled counting setting (counter, its parameters, offset) inside trial parameters."""
    if trains_density(params):
        return {"counter": "density", "offset": params["offset"]}
    counter = params["counter"]
    return {"counter": counter, **{k: params[k] for k in COUNTER_GRID[counter]}, "offset": params["offset"]}


def setting_name(setting: dict) -> str:
    """A short readable key for a counting setting, e.g. ``watershed t=0.5 md=2 ma=5 ef=0.2 +0``."""
    short = {"threshold": "t", "min_distance": "md", "min_area": "ma", "edge_fraction": "ef"}
    parts = [f"{short[k]}={v}" for k, v in setting.items() if k in short]
    return " ".join([setting["counter"], *parts, f"{setting['offset']:+d}"])
