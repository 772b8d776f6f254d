"""Honest trial values: counting chosen out of sample, and uncertainty over source images.

Everything here works on per-tile count errors and tile groups (source images); nothing
knows about pixels or networks.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 2000  # bootstrap resamples: the standard error's own noise is then about 1.6%
Z95 = 1.96


def halves(groups: np.ndarray, seed: int) -> np.ndarray:
    """Assign every group (source image) to half 0 or 1 at random; returns a per-tile mask of half 1.

    Groups are shuffled with a seeded generator and alternate between the halves, so both
    hold about the same number of images.
    """
    ids = np.random.Generator(np.random.PCG64(seed)).permutation(np.unique(groups))
    return np.isin(groups, ids[1::2])


def crossfit_errors(errors: np.ndarray, groups: np.ndarray, seed: int = 0) -> tuple[np.ndarray, int]:
    """Per-tile errors of choosing the counting setting on one half of the images and applying it to the other.

    The lowest MAE over many settings on the same tiles is optimistic; choosing on half of the
    source images and scoring on the other half (both ways round) is not.

    Parameters
    ----------
    errors : ndarray, shape (S, N)
        Signed count error of each of S counting settings on each of N tiles.
    groups : ndarray, shape (N,)
        Source image of each tile.
    seed : int
        Seeds the assignment of images to halves.

    Returns
    -------
    crossfit : ndarray, shape (N,)
        Each tile's error under the setting chosen on the other half.
    chosen : int
        The setting with the lowest MAE on all tiles (the one to use from now on).
    """
    abs_errors = np.abs(errors)
    chosen = int(np.argmin(abs_errors.mean(1)))
    in_b = halves(groups, seed)
    if in_b.all() or not in_b.any():  # a single image: nothing to hold out
        return errors[chosen], chosen
    crossfit = np.empty(errors.shape[1])
    for scored in (in_b, ~in_b):
        pick = int(np.argmin(abs_errors[:, ~scored].mean(1)))
        crossfit[scored] = errors[pick, scored]
    return crossfit, chosen


def _group_sums(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``values`` and number of tiles per group."""
    _, index = np.unique(groups, return_inverse=True)
    return np.bincount(index, weights=values), np.bincount(index).astype(float)


def bootstrap_means(values: np.ndarray, groups: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Means of ``values`` over tiles, with source images resampled with replacement.

    Resampling images rather than tiles keeps the tiles of one image together: they are not
    independent, and a tile-level bootstrap would understate the spread.
    """
    sums, sizes = _group_sums(np.asarray(values, dtype=float), np.asarray(groups))
    pick = np.random.Generator(np.random.PCG64(seed)).integers(0, len(sums), size=(n_boot, len(sums)))
    return sums[pick].sum(1) / sizes[pick].sum(1)


def mae_se(errors: np.ndarray, groups: np.ndarray) -> float:
    """Standard error of the count-MAE over source images (group bootstrap)."""
    return float(bootstrap_means(np.abs(errors), groups).std(ddof=1))


def compare(errors_a: np.ndarray, errors_b: np.ndarray, groups: np.ndarray) -> dict:
    """Paired comparison of two trials' count-MAE on the same tiles (a minus b).

    Returns
    -------
    dict
        ``diff`` (MAE of a minus MAE of b), ``se`` (group bootstrap), ``low`` and ``high`` (a 95%
        normal interval) and ``significant`` (the interval excludes 0).
    """
    paired = np.abs(errors_a) - np.abs(errors_b)
    diff = float(paired.mean())
    se = float(bootstrap_means(paired, groups).std(ddof=1))
    low, high = diff - Z95 * se, diff + Z95 * se
    return {"diff": diff, "se": se, "low": low, "high": high, "significant": bool(high < 0 or low > 0)}
