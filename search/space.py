"""The search space and the profiles: every searched parameter is defined here, once.

The five parameters of the original brief are ``lr``, ``epochs``, ``depth``, ``upsample``
and ``offset``; the others widen the search to the loss, augmentation, batch size and the
counting method. ``SEED_BASELINE`` is the seed write-up's own configuration, run first in
every new study so the gain of the search is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

LR_RANGE = (1e-5, 1e-2)  # log scale; the seed tried 1e-4..5e-4 by hand
DEPTHS = (3, 4)
UPSAMPLES = ("interp", "transpose")
# Added to every count (convention in model/count.py). Components undercount by 1.6-1.8 on
# perfect masks of the embedded data (touching nuclei merge), so +2 must be reachable; a
# splitting counter can over-split, so -1 is too.
OFFSETS = (-1, 2)
LOSSES = ("bce", "bce_dice")
AUGMENT = (False, True)
BATCH_SIZES = (8, 16, 32)
# Counting settings besides the offset. All of them are also scored after training on the
# trial's validation predictions (``counting_grid``), which costs no training.
COUNTERS = {
    "components": {"threshold": (0.4, 0.5, 0.6)},
    "watershed": {
        "threshold": (0.4, 0.5, 0.6),
        "min_distance": (2, 3),
        "min_area": (5, 10),
        "edge_fraction": (0.0, 0.2, 0.3),
    },
}


@dataclass(frozen=True)
class Profile:
    """Network width, epoch range and default budget for one kind of machine."""

    name: str
    base: int  # U-Net channels of the first block
    epochs: tuple[int, int]  # searched range, inclusive
    timeout: float  # default study wall-clock budget, seconds
    n_trials: int  # default number of trials


PROFILES = {
    # The seed's full-size net, for a GPU.
    "seed": Profile("seed", base=64, epochs=(10, 60), timeout=4 * 3600, n_trials=40),
    # A small net and short trials: a useful study on 2 CPU cores within 15 minutes.
    "quick": Profile("quick", base=8, epochs=(4, 20), timeout=15 * 60, n_trials=40),
}

SEED_EPOCHS = 45


def seed_baseline(profile: Profile) -> dict:
    """The seed's configuration as trial parameters, its 45 epochs scaled to the profile."""
    seed_range = PROFILES["seed"].epochs
    scale = (profile.epochs[1] - profile.epochs[0]) / (seed_range[1] - seed_range[0])
    epochs = round(profile.epochs[0] + (SEED_EPOCHS - seed_range[0]) * scale)
    return {
        "lr": 2e-4, "epochs": epochs, "depth": 4, "upsample": "interp", "offset": 1,
        "loss": "bce", "augment": False, "batch_size": 16,
        "counter": "components", "threshold": 0.5,
    }


def suggest(trial: optuna.Trial, profile: Profile) -> dict:
    """Sample one configuration; counting parameters depend on the sampled counter."""
    params = {
        "lr": trial.suggest_float("lr", *LR_RANGE, log=True),
        "epochs": trial.suggest_int("epochs", *profile.epochs),
        "depth": trial.suggest_categorical("depth", DEPTHS),
        "upsample": trial.suggest_categorical("upsample", UPSAMPLES),
        "offset": trial.suggest_int("offset", *OFFSETS),
        "loss": trial.suggest_categorical("loss", LOSSES),
        "augment": trial.suggest_categorical("augment", AUGMENT),
        "batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
        "counter": trial.suggest_categorical("counter", tuple(COUNTERS)),
    }
    for name, values in COUNTERS[params["counter"]].items():
        params[name] = trial.suggest_categorical(name, values)
    return params


def with_offsets(setting: dict) -> list[dict]:
    """The counting setting with each offset of the space."""
    return [{**setting, "offset": o} for o in range(OFFSETS[0], OFFSETS[1] + 1)]


def monitor_settings(sampled: dict) -> list[dict]:
    """A few counting settings whose best validation MAE tracks the tuned objective every epoch.

    The sampled setting and every other counter at its defaults, each with every offset: a
    trial whose net is good is not pruned merely because it sampled a poor counter.
    """
    others = [{"counter": c} for c in COUNTERS if c != sampled["counter"]]
    return [s for setting in [sampled, *others] for s in with_offsets(setting)]


def counting_grid() -> list[dict]:
    """Every counting setting of the space (counter, its parameters, offset), as dicts."""
    grid = []
    for counter, space in COUNTERS.items():
        settings = [{}]
        for name, values in space.items():
            settings = [{**s, name: v} for s in settings for v in values]
        for s in settings:
            grid += with_offsets({"counter": counter, **s})
    return grid


def counting_of(params: dict) -> dict:
    """The counting setting (counter, its parameters, offset) inside trial parameters."""
    counter = params["counter"]
    return {"counter": counter, **{k: params[k] for k in COUNTERS[counter]}, "offset": params["offset"]}
