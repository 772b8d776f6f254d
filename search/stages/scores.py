"""A trained trial's scores: the counting setting chosen out of sample and the value it gives
(``Scored``), and what the trial records of them and of its training, as user attributes the
dashboard, the summary and the report read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import optuna

import data
from model.scoring import count_errors
from search import space
from search.results import stats
from search.roles import REFERENCE_COUNTING_ATTR


@dataclass
class Scored:
    """How a trained trial counts its validation tiles, and its value."""

    counting: dict  # the setting used from now on (the export's)
    errors: np.ndarray  # per-tile errors that make the value
    grid_errors: np.ndarray  # (settings, tiles) errors of every counting setting
    row: int  # the row of ``counting`` in ``grid_errors``
    out_of_sample: bool = True  # False: one validation image, nothing held out

    @property
    def value(self) -> float:
        return float(np.abs(self.errors).mean())


def score(prob: np.ndarray, split: data.Split, mode: str, seed: int, sampled: dict | None, grid: list[dict]) -> Scored:
    """Count the validation tiles of ``split`` with every setting of ``grid``; the value is scored out of sample.

    Tuned: the setting is chosen on half of the validation images and scored on the other
    half (both ways round), so the value is not the luckiest of the grid; the setting kept
    is the best on all of them (``seed`` draws the halves). Sampled: the sampled setting, as it is.
    """
    errors = count_errors(prob, split.val_counts, grid)
    if mode == "sampled":
        row = grid.index(sampled)
        return Scored(sampled, errors[row], errors, row)
    crossfit, chosen, out_of_sample = stats.crossfit_errors(errors, split.val_groups, seed)
    return Scored(grid[chosen], crossfit, errors, chosen, out_of_sample)


def record_scores(trial: optuna.Trial, scored: Scored, grid: list[dict], groups: np.ndarray) -> None:
    """Record the trial's counting and its scores as user attributes (shown by the dashboard)."""
    counting, errors = scored.counting, scored.errors
    mae = np.abs(scored.grid_errors).mean(1)
    by_name = {space.setting_name(g): round(float(m), 4) for g, m in zip(grid, mae)}
    trial.set_user_attr("counting", counting)
    trial.set_user_attr("counting_name", space.setting_name(counting))
    # The brief's fifth parameter: chosen after training unless sampled, and shown either way.
    trial.set_user_attr("offset", counting["offset"])
    se = stats.mae_se(errors, groups)
    trial.set_user_attr("value_se", None if se is None else round(se, 4))
    trial.set_user_attr("value_out_of_sample", scored.out_of_sample)
    trial.set_user_attr("val_bias", round(float(errors.mean()), 4))
    trial.set_user_attr("val_errors", [int(e) for e in errors])
    trial.set_user_attr("val_groups", [int(g) for g in groups])  # the images those errors are over
    trial.set_user_attr("val_mae_best_in_sample", float(mae.min().round(4)))
    # A density map has no reference counting (thresholded components).
    trial.set_user_attr(REFERENCE_COUNTING_ATTR, by_name.get(space.setting_name(space.REFERENCE_COUNTING)))
    for setting in space.with_offsets(counting):
        trial.set_user_attr(f"val_mae_offset_{setting['offset']:+d}", by_name[space.setting_name(setting)])
    trial.set_user_attr("counting_scores", by_name)


def learning_curve(history: list) -> list[dict]:
    """Each epoch's losses and validation MAE, rounded; an epoch not validated has nulls."""

    def rounded(value: float, digits: int) -> float | None:
        return round(value, digits) if math.isfinite(value) else None  # JSON (and the dashboard) has no NaN

    return [
        {
            "epoch": r.epoch,
            "train_loss": round(r.train_loss, 5),
            "val_loss": rounded(r.val_loss, 5),
            "val_mae": rounded(r.val_mae, 4),
        }
        for r in history
    ]
