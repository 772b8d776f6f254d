"""Weights over the finalists and a calibrated count, chosen on out-of-fold counts, and an honest score of both.

Every training-side image has one out-of-fold count from every finalist (its fold run that held
the image out). :func:`greedy_weights` picks non-negative weights summing to 1 that minimise the
count-MAE of the weighted mean (Caruana et al. 2004, ensemble selection with replacement);
:func:`calibrate` then picks how that mean becomes a count (as it is, plus an offset, or a linear
map; rounded or not). Both are chosen on the images they would be scored on, so
:func:`nested_errors` scores the procedure by cross-fitting: chosen on K-1 folds, applied to the
fold held out. Plain numpy: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from search.results.stats import halves

STEPS = 40  # greedy steps: weights in multiples of 1/40, and few enough not to chase noise
FORMS = ("none", "offset", "linear")  # calibrations, simplest first: the first of equal scores wins
IRLS_STEPS = 50  # reweighted least-squares steps of the least-absolute-deviation line


def greedy_weights(counts: np.ndarray, truth: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """Weights of ``M`` members chosen greedily, with replacement, to minimise the MAE of their weighted mean.

    Each step adds to the bag the member whose addition gives the lowest MAE (the earliest on a
    tie); a member may be added many times, and its weight is its share of the ``steps``.

    Parameters
    ----------
    counts : ndarray, shape (M, N)
        Each member's count of each of N tiles.
    truth : ndarray, shape (N,)
        True counts.
    steps : int
        Members added in all.

    Returns
    -------
    ndarray, shape (M,)
        Non-negative weights that sum to 1.
    """
    counts, truth = np.asarray(counts, float), np.asarray(truth, float)
    picked, total = np.zeros(len(counts)), np.zeros(counts.shape[1])
    for step in range(1, steps + 1):
        mae = np.abs((total + counts) / step - truth).mean(1)
        best = int(np.argmin(mae))
        picked[best] += 1
        total += counts[best]
    return picked / steps


@dataclass(frozen=True)
class Calibration:
    """How a weighted mean count ``m`` becomes the count: ``max(0, scale * m + shift)``, rounded or not.

    ``shift`` is per tile: :meth:`apply` adds it ``area`` times for an image of ``area`` tiles.
    """

    form: str = "none"
    scale: float = 1.0
    shift: float = 0.0
    rounded: bool = True

    def apply(self, mean: np.ndarray, area: float | np.ndarray = 1.0, rounded: bool | None = None) -> np.ndarray:
        """The counts of weighted means ``mean``; ``rounded=False`` gives them unrounded (halves round up)."""
        value = np.maximum(0.0, self.scale * np.asarray(mean, float) + self.shift * area)
        return np.floor(value + 0.5) if (self.rounded if rounded is None else rounded) else value

    def text(self) -> str:
        """E.g. ``"1.040 x mean - 0.210, rounded"``."""
        rule = {"none": "the mean", "offset": f"the mean {self.shift:+.3f}"}.get(
            self.form, f"{self.scale:.3f} x mean {self.shift:+.3f}"
        )
        return f"{rule}, {'rounded' if self.rounded else 'not rounded'}"

    def to_dict(self) -> dict:
        return asdict(self)


def lad_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(scale, shift)`` of the line that minimises the absolute deviations of ``y`` from ``scale * x + shift``.

    Iteratively reweighted least squares; a constant ``x`` gives the median of ``y - x`` as shift.
    """
    if np.ptp(x) == 0:
        return 1.0, float(np.median(y - x))
    design = np.stack([x, np.ones_like(x)], 1)
    weights = np.ones_like(x)
    for _ in range(IRLS_STEPS):
        root = np.sqrt(weights)[:, None]
        coef = np.linalg.lstsq(design * root, y * root[:, 0], rcond=None)[0]
        weights = 1 / np.maximum(np.abs(y - design @ coef), 1e-3)
    return float(coef[0]), float(coef[1])


def fit_form(form: str, mean: np.ndarray, truth: np.ndarray) -> Calibration:
    """The calibration of ``form`` fitted to minimise the MAE of the unrounded counts."""
    if form == "offset":
        return Calibration(form, shift=float(np.median(truth - mean)), rounded=False)
    if form == "linear":
        return Calibration(form, *lad_line(mean, truth), rounded=False)
    return Calibration(form, rounded=False)


def calibrate(mean: np.ndarray, truth: np.ndarray, groups: np.ndarray, seed: int = 0) -> Calibration:
    """The calibration of weighted mean counts: its form chosen out of sample, rounding only where it costs nothing.

    Each form is fitted on half of the source images and scored on the other half, both ways
    round; the lowest of those MAEs (the simplest form on a tie) is fitted on all images. It
    rounds when the rounded counts' MAE against the integer truth is no higher than the unrounded.
    """
    mean, truth, groups = np.asarray(mean, float), np.asarray(truth, float), np.asarray(groups)
    in_b = halves(groups, seed)
    form = "none"
    if in_b.any() and not in_b.all():
        scores = []
        for name in FORMS:
            error = sum(
                np.abs(fit_form(name, mean[~part], truth[~part]).apply(mean[part]) - truth[part]).sum()
                for part in (in_b, ~in_b)
            )
            scores.append(error)
        form = FORMS[int(np.argmin(np.round(scores, 9)))]
    fitted = fit_form(form, mean, truth)
    rounded = np.abs(fitted.apply(mean, rounded=True) - truth).mean() <= np.abs(fitted.apply(mean) - truth).mean()
    return Calibration(fitted.form, fitted.scale, fitted.shift, bool(rounded))


def choose(counts: np.ndarray, truth: np.ndarray, groups: np.ndarray, steps: int = STEPS):
    """Weights (:func:`greedy_weights`) and the calibration of their mean (:func:`calibrate`).

    Returns
    -------
    weights : ndarray, shape (M,)
    calibration : Calibration
    """
    weights = greedy_weights(counts, truth, steps)
    return weights, calibrate(weights @ np.asarray(counts, float), truth, groups)


def nested_errors(
    counts: np.ndarray, truth: np.ndarray, groups: np.ndarray, folds: np.ndarray, steps: int = STEPS
) -> np.ndarray:
    """Each tile's count error when weights and calibration are chosen on the other folds (:func:`choose`).

    Parameters
    ----------
    counts : ndarray, shape (M, N)
        Each member's out-of-fold count of each tile.
    truth, groups, folds : ndarray, shape (N,)
        True count, source image and fold of each tile.

    Returns
    -------
    ndarray, shape (N,)
        Signed errors, none of them chosen on its own fold.
    """
    counts, truth, folds = np.asarray(counts, float), np.asarray(truth, float), np.asarray(folds)
    errors = np.empty(len(truth))
    for k in np.unique(folds):
        held = folds == k
        weights, calibration = choose(counts[:, ~held], truth[~held], np.asarray(groups)[~held], steps)
        errors[held] = calibration.apply(weights @ counts[:, held]) - truth[held]
    return errors
