"""Honest trial values: counting chosen out of sample, uncertainty over source images and training runs.

Everything here works on per-tile count errors, counts and tile groups (source images); nothing
knows about pixels or networks. Every interval first asks :func:`too_few` whether the data can
support one: a bootstrap over one or two images, or a spread over one or two training runs, says
nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

N_BOOT = 2000  # bootstrap resamples: the standard error's own noise is then about 1.6%
LEVEL = 0.95  # two-sided coverage of every interval
MIN_IMAGES = 5  # validation images an interval needs: a bootstrap over fewer resamples almost nothing
# Training runs (folds) per configuration a spread between runs needs. With 2, that spread rests on
# one degree of freedom and is often estimated as 0, leaving an interval over images alone: two
# studies called a gain "significant" that the test images did not show (BENCHMARKS.md).
MIN_RUNS = 3


def too_few(n_images: int, runs: int | None = None, kind: str = "validation") -> str | None:
    """Why no interval can be estimated from ``n_images`` images and ``runs`` training runs, or None.

    Parameters
    ----------
    n_images : int
        Distinct images (source images) behind the errors.
    runs : int, optional
        Training runs of each compared configuration, one per fold.
    kind : str
        What the images are, for the clause.

    Returns
    -------
    str or None
        A plain clause such as ``"1 validation image (an interval needs 5)"``.
    """
    reasons = []
    if n_images < MIN_IMAGES:
        reasons.append(f"{n_images} {kind} image{'s' * (n_images != 1)} (an interval needs {MIN_IMAGES})")
    if runs is not None and runs < MIN_RUNS:
        reasons.append(f"{runs} training run{'s' * (runs != 1)} per finalist (a spread needs {MIN_RUNS})")
    return " and ".join(reasons) or None


def halves(groups: np.ndarray, seed: int) -> np.ndarray:
    """Assign every group (source image) to half 0 or 1 at random; returns a per-tile mask of half 1.

    Groups are shuffled with a seeded generator and alternate between the halves, so both
    hold about the same number of images.
    """
    ids = np.random.Generator(np.random.PCG64(seed)).permutation(np.unique(groups))
    return np.isin(groups, ids[1::2])


def crossfit_errors(errors: np.ndarray, groups: np.ndarray, seed: int = 0) -> tuple[np.ndarray, int, bool]:
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
    out_of_sample : bool
        False when a single image leaves nothing to hold out: ``crossfit`` is then the chosen
        setting's own, optimistic, errors.
    """
    abs_errors = np.abs(errors)
    chosen = int(np.argmin(abs_errors.mean(1)))
    in_b = halves(groups, seed)
    if in_b.all() or not in_b.any():
        return errors[chosen], chosen, False
    crossfit = np.empty(errors.shape[1])
    for scored in (in_b, ~in_b):
        pick = int(np.argmin(abs_errors[:, ~scored].mean(1)))
        crossfit[scored] = errors[pick, scored]
    return crossfit, chosen, True


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


def mae_se(errors: np.ndarray, groups: np.ndarray) -> float | None:
    """Standard error of the count-MAE over source images (group bootstrap); None with too few images."""
    if too_few(len(np.unique(groups))):
        return None
    return float(bootstrap_means(np.abs(errors), groups).std(ddof=1))


def t_quantile(df: float, p: float = 0.5 + LEVEL / 2) -> float:
    """Quantile ``p`` (above 0.5) of Student's t with ``df`` degrees of freedom, fractional allowed.

    Found by bisection on the t density integrated numerically (trapezoids on 4001 points give
    about six correct digits even for ``df=1``), so no statistics package is needed.
    """
    if not math.isfinite(df) or df > 1e6:
        return NormalDist().inv_cdf(p)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        grid = np.linspace(0.0, x, 4001)
        pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(grid**2 / df))
        return 0.5 + float((pdf[1:] + pdf[:-1]).sum()) * (grid[1] - grid[0]) / 2

    low, high = 0.0, NormalDist().inv_cdf(p)
    while cdf(high) < p:
        low, high = high, 2 * high
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < p else (low, mid)
    return (low + high) / 2


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two count-MAEs on the same tiles: ``diff`` is MAE of a minus MAE of b.

    With enough images (and runs) it carries a 95% t interval: ``se`` (whose square is
    ``se_images**2 + se_runs**2`` when both are given), its degrees of freedom ``df``, and
    ``low``/``high``. Otherwise ``too_few`` says why there is none.
    """

    diff: float
    se: float | None = None
    df: float | None = None
    low: float | None = None
    high: float | None = None
    se_images: float | None = None
    se_runs: float | None = None
    too_few: str | None = None

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0 (never without an interval)."""
        return self.low is not None and (self.high < 0 or self.low > 0)

    @property
    def is_gain(self) -> bool:
        """Whether a (new minus baseline) is significantly lower: a gain."""
        return self.significant and self.diff < 0

    def to_dict(self) -> dict:
        """The fields that are set, plus ``significant``: for JSON logs."""
        return {**{k: v for k, v in asdict(self).items() if v is not None}, "significant": self.significant}


def _interval(diff: float, variances: list[float], dofs: list[float], **parts: float) -> Comparison:
    """A t interval around ``diff`` whose variance is the sum of independent parts.

    The degrees of freedom combine the parts' own (Welch-Satterthwaite): a part estimated from
    two seeds has one, and widens the interval accordingly.
    """
    var = float(sum(variances))
    denom = sum(v**2 / d for v, d in zip(variances, dofs) if v > 0)
    df = var**2 / denom if denom > 0 else math.inf
    se = math.sqrt(var)
    half = t_quantile(df) * se
    return Comparison(diff, se, df, diff - half, diff + half, **parts)


def compare(errors_a: np.ndarray, errors_b: np.ndarray, groups: np.ndarray) -> Comparison:
    """Paired comparison of two models' count-MAE on the same tiles (a minus b), over images only.

    The standard error is a group bootstrap over source images; with fewer images than
    :func:`too_few` allows, the result has ``too_few`` and no interval.
    """
    paired = np.abs(errors_a) - np.abs(errors_b)
    diff = float(paired.mean())
    n_images = len(np.unique(groups))
    reason = too_few(n_images)
    if reason:
        return Comparison(diff, too_few=reason)
    var = float(bootstrap_means(paired, groups).var(ddof=1))
    return _interval(diff, [var], [n_images - 1])


def ensemble_counts(counts: np.ndarray) -> np.ndarray:
    """The rounded mean of several models' counts of the same tiles (halves round up).

    Parameters
    ----------
    counts : array_like, shape (M, N)
        Count of each of M models on each of N tiles.

    Returns
    -------
    ndarray of int64, shape (N,)

    Notes
    -----
    Shifting every model's counts by the same integers shifts the result by them too, so
    applied to signed errors (counts minus integer true counts) it gives the ensemble's errors.
    """
    return np.floor(np.asarray(counts, dtype=float).mean(0) + 0.5).astype(np.int64)


def compare_folds(errors_a: np.ndarray, errors_b: np.ndarray, groups: np.ndarray, folds: np.ndarray) -> Comparison:
    """Compare two configurations' out-of-fold count-MAE (a minus b) over images and training runs.

    Each fold's images were predicted by one run of each configuration, trained without them.
    The difference is taken over all images (tiles weighted alike). Its variance has two parts:
    which images were drawn (a paired bootstrap over images within each fold) and which runs
    were drawn, a random effect per fold run. The second is estimated from how much more the
    folds' own differences vary than their images explain (method of moments, at least 0),
    with ``folds - 1`` degrees of freedom; the interval is a t interval over both parts.

    Parameters
    ----------
    errors_a, errors_b : ndarray, shape (N,)
        Each tile's signed count error under the run that held out its fold.
    groups : ndarray, shape (N,)
        Source image of each tile.
    folds : ndarray, shape (N,)
        Fold of each tile (the run that predicted it).

    Returns
    -------
    Comparison
        As :func:`compare`, with ``se_images`` and ``se_runs``.
    """
    paired = np.abs(np.asarray(errors_a, float)) - np.abs(np.asarray(errors_b, float))
    groups, folds = np.asarray(groups), np.asarray(folds)
    diff = float(paired.mean())
    ids = np.unique(folds)
    n_images = len(np.unique(groups))
    reason = too_few(n_images, len(ids), "out-of-fold")
    if reason:
        return Comparison(diff, too_few=reason)
    weights = np.array([np.mean(folds == k) for k in ids])
    fold_diffs = np.array([paired[folds == k].mean() for k in ids])
    fold_vars = np.array([bootstrap_means(paired[folds == k], groups[folds == k]).var(ddof=1) for k in ids])
    var_images = float((weights**2 * fold_vars).sum())
    between = max(0.0, float(fold_diffs.var(ddof=1) - fold_vars.mean()))
    var_runs = float((weights**2).sum() * between)
    parts = {"se_images": math.sqrt(var_images), "se_runs": math.sqrt(var_runs)}
    return _interval(diff, [var_images, var_runs], [n_images - len(ids), len(ids) - 1], **parts)
