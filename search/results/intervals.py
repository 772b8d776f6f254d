"""Prediction intervals for counts from out-of-fold residuals: CV+ (Barber, Candes, Ramdas, Tibshirani 2021).

Fold k's models never saw fold k's images, so their residuals there are honest. CV+ centres the
residuals of each fold's images on that fold's models' prediction for the new tile and takes
quantiles of the lower and upper ends. Tiles of one source image are not exchangeable with each
other, images are: every image's residuals weigh 1 in all (each of its tiles 1 / its tiles), and
the quantile's ``(n + 1) / n`` correction counts images. Residuals may be divided by
:func:`count_scale` (``sqrt(count + 1)``) and multiplied back at the new tile: wider intervals for
larger counts. Plain numpy: arrays in, arrays out.
"""

from __future__ import annotations

import numpy as np

LEVEL = 0.9  # the default coverage of a count's interval


def min_images(level: float) -> int:
    """The fewest source images whose residuals give a finite interval at ``level``: ``level * (1 + 1/n) <= 1``."""
    return int(np.ceil(level / (1 - level) - 1e-9))


def count_scale(count: np.ndarray, normalised: bool = True) -> np.ndarray:
    """The residual scale of a predicted count: ``sqrt(count + 1)``, or 1 when not ``normalised``."""
    count = np.asarray(count, float)
    return np.sqrt(np.maximum(count, 0) + 1) if normalised else np.ones_like(count)


def image_weights(groups: np.ndarray) -> np.ndarray:
    """Each tile's weight: 1 over its source image's tiles, so that every image weighs 1."""
    _, index, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / sizes[index]


def upper_quantile(values: np.ndarray, weights: np.ndarray, level: float, n_images: int) -> np.ndarray:
    """The smallest value per column whose weighted share at or below it reaches ``level * (1 + 1/n_images)``.

    Parameters
    ----------
    values : ndarray, shape (N,) or (N, T)
        Values to take the quantile of, along axis 0.
    weights : ndarray, shape (N,)
        Weights of the rows; they sum to ``n_images``.
    level : float
        Coverage, in (0, 1).
    n_images : int
        Exchangeable units (source images) behind the rows.

    Returns
    -------
    ndarray, shape () or (T,)
        ``inf`` where the corrected level exceeds 1 (too few images for it).
    """
    values = np.asarray(values, float)
    target = level * (1 + 1 / n_images)
    if target > 1:
        return np.full(values.shape[1:], np.inf)
    order = np.argsort(values, axis=0, kind="stable")
    mass = np.cumsum(np.asarray(weights, float)[order], axis=0) / np.sum(weights)
    row = np.argmax(mass >= target - 1e-12, axis=0)  # the first row that reaches the level
    return np.take_along_axis(np.take_along_axis(values, order, axis=0), np.expand_dims(row, 0), axis=0)[0]


def cv_plus(
    centres: np.ndarray, residuals: np.ndarray, groups: np.ndarray, level: float = LEVEL, normalised: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """CV+ intervals of new tiles from out-of-fold residuals.

    Parameters
    ----------
    centres : ndarray, shape (N, T)
        For each out-of-fold tile i, the prediction for each of T new tiles by the models of
        the fold that held tile i out.
    residuals : ndarray, shape (N,)
        ``|true - predicted|`` of each out-of-fold tile, divided by :func:`count_scale` of its
        prediction when ``normalised``.
    groups : ndarray, shape (N,)
        Source image of each out-of-fold tile.
    level : float
        Coverage, in (0, 1).
    normalised : bool
        Whether residuals are scaled: each is multiplied back by the scale of its centre.

    Returns
    -------
    low, high : ndarray, shape (T,)
        Ends of each new tile's interval (infinite with too few images for ``level``).
    """
    centres = np.asarray(centres, float)
    spread = np.asarray(residuals, float)[:, None] * count_scale(centres, normalised)
    weights, n_images = image_weights(groups), len(np.unique(groups))
    high = upper_quantile(centres + spread, weights, level, n_images)
    low = -upper_quantile(-(centres - spread), weights, level, n_images)
    return low, high


def image_residuals(predicted: np.ndarray, truth: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each source image's residual of its summed tile counts, scaled by :func:`count_scale` of its summed prediction.

    A whole image's error is not a tile's: errors of one image's tiles share its staining, focus
    and crowding, and add up rather than cancel. Summed per image, the residuals carry that; scaled
    by ``sqrt(count + 1)`` they transfer to images of other sizes as far as the errors of their
    parts add like independent ones (overlapping tiles count some cells twice: a wider residual).

    Returns
    -------
    residuals : ndarray, shape (G,)
        One per source image, in the order of ``np.unique(groups)``.
    first : ndarray, shape (G,)
        The index of each image's first tile (to look up its fold).
    """
    _, first, index = np.unique(groups, return_index=True, return_inverse=True)
    predicted_sum = np.bincount(index, weights=np.asarray(predicted, float))
    error_sum = np.bincount(index, weights=np.asarray(truth, float) - predicted)
    return np.abs(error_sum) / count_scale(predicted_sum), first


def fold_coverage(
    predicted: np.ndarray, truth: np.ndarray, groups: np.ndarray, folds: np.ndarray, level: float, normalised: bool
) -> np.ndarray:
    """Whether each out-of-fold tile falls in the interval its own prediction gets from the other folds' residuals.

    A cheap check of coverage on the data the intervals come from: each fold's tiles are judged
    by the residual quantile of the other folds (split conformal, fold by fold).
    """
    predicted, truth, folds = np.asarray(predicted, float), np.asarray(truth, float), np.asarray(folds)
    scale = count_scale(predicted, normalised)
    residuals = np.abs(truth - predicted) / scale
    covered = np.zeros(len(truth), bool)
    for k in np.unique(folds):
        held = folds == k
        others = np.asarray(groups)[~held]
        q = upper_quantile(residuals[~held], image_weights(others), level, len(np.unique(others)))
        covered[held] = residuals[held] <= q + 1e-9
    return covered


def tercile_coverage(predicted: np.ndarray, covered: np.ndarray) -> list[float]:
    """Share covered in each third of the tiles by predicted count (ties kept together: terciles may differ in size)."""
    predicted = np.asarray(predicted, float)
    edges = np.quantile(predicted, [1 / 3, 2 / 3])
    third = np.searchsorted(edges, predicted, side="left")
    return [float(covered[third == t].mean()) if (third == t).any() else float("nan") for t in range(3)]


def choose_normalised(
    predicted: np.ndarray, truth: np.ndarray, groups: np.ndarray, folds: np.ndarray, level: float = LEVEL
) -> tuple[bool, list[float]]:
    """Whether residuals scaled by :func:`count_scale` keep coverage more even across count sizes than plain ones.

    Compares the spread (highest minus lowest) of :func:`fold_coverage` over count terciles; plain
    residuals on a tie, and with one fold (coverage then unknown: NaN).

    Returns
    -------
    normalised : bool
    terciles : list of float
        The coverage per tercile of the chosen residuals.
    """
    if len(np.unique(folds)) < 2:  # no other fold to judge one by
        return False, [float("nan")] * 3
    spreads = {}
    for normalised in (False, True):
        covered = fold_coverage(predicted, truth, groups, folds, level, normalised)
        terciles = tercile_coverage(predicted, covered)
        spreads[normalised] = (np.nanmax(terciles) - np.nanmin(terciles), terciles)
    normalised = bool(spreads[True][0] < spreads[False][0])
    return normalised, spreads[normalised][1]
