"""The submission's blend of the finalists: weights, counting and intervals, all chosen out of fold.

:func:`stage_blend` reads every finalist's out-of-fold counts (its fold runs' counts of the
images they held out) and chooses weights and a calibration on them (:mod:`search.results.ensemble`),
scores that choice by nested cross-fitting against the reference's models chosen the same way,
and keeps the residuals that give every new count a CV+ interval (:mod:`search.results.intervals`).
A :class:`Blend` then turns its members' counts of new tiles or images into counts and intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search.results import ensemble, intervals, stats
from search.results.verdict import Finalist, common_folds
from search.roles import EARLIER, is_reference_role


@dataclass
class Blend:
    """Weights over finalists and their counting, with the out-of-fold evidence behind them.

    Arrays of shape (N,) are over the out-of-fold tiles of ``folds``: ``predicted`` is the blend
    of the fold runs (unrounded), ``nested`` its errors chosen without the tile's fold (None with
    one fold), ``reference_nested`` those of the reference's models chosen the same way.
    """

    trials: list[int]  # the finalists' search trials, in the order of ``weights``
    weights: np.ndarray
    calibration: ensemble.Calibration
    folds: list[int]
    predicted: np.ndarray
    truth: np.ndarray
    groups: np.ndarray
    fold_of: np.ndarray
    normalised: bool  # whether tile residuals are scaled by sqrt(count + 1)
    terciles: list[float]  # out-of-fold coverage at the default level by count tercile
    nested: np.ndarray | None = None
    reference: int | None = None
    reference_nested: np.ndarray | None = None

    def weight(self, trial: int) -> float:
        return float(self.weights[self.trials.index(trial)]) if trial in self.trials else 0.0

    def used(self) -> list[int]:
        """The finalists with a weight above 0, in order."""
        return [t for t, w in zip(self.trials, self.weights) if w > 0]

    def mean(self, counts: np.ndarray, keys: list[tuple], fold: int | None = None) -> np.ndarray:
        """The weighted mean of the finalists' counts: of each finalist's models, or of its run of ``fold``.

        ``keys`` are ``(finalist trial, fold or None)`` of the rows of ``counts`` (models, items).
        """
        counts = np.asarray(counts, float)
        total = np.zeros(counts.shape[1])
        for trial in self.used():
            rows = [i for i, (t, k) in enumerate(keys) if t == trial and (fold is None or k == fold)]
            total += self.weight(trial) * counts[rows].mean(0)
        return total

    def counts(self, counts: np.ndarray, keys: list[tuple], area: float | np.ndarray = 1.0) -> np.ndarray:
        """The blend's counts of new items (``area`` in tiles: a whole image gets the per-tile shift that often)."""
        final = self.calibration.apply(self.mean(counts, keys), area)
        return final.astype(np.int64) if self.calibration.rounded else np.round(final, 3)

    def intervals(self, counts, keys, level: float, area=1.0, whole: bool = False) -> tuple | None:
        """CV+ intervals ``(low, high)`` of new items, as the integers they hold; None with too few images for them.

        Each out-of-fold residual is centred on the new item's count by the fold runs that held it
        out. Tiles use the tiles' residuals (scaled by the count if :attr:`normalised`); ``whole``
        images use each source image's residual of its summed tile counts, scaled by the count
        (:func:`search.results.intervals.image_residuals`): a tile's residual is no whole image's.
        """
        if self.n_images < intervals.min_images(level):
            return None
        by_fold = {k: self.calibration.apply(self.mean(counts, keys, k), area, rounded=False) for k in self.folds}
        if whole:
            residuals, first = intervals.image_residuals(self.predicted, self.truth, self.groups)
            fold_of, groups, normalised = self.fold_of[first], self.groups[first], True
        else:
            residuals = np.abs(self.truth - self.predicted) / intervals.count_scale(self.predicted, self.normalised)
            fold_of, groups, normalised = self.fold_of, self.groups, self.normalised
        centres = np.stack([by_fold[k] for k in fold_of])
        low, high = intervals.cv_plus(centres, residuals, groups, level, normalised)
        low = np.maximum(0, np.ceil(low - 1e-9))  # true counts are integers: these ends hold the same ones
        return low.astype(np.int64), np.maximum(low, np.floor(high + 1e-9)).astype(np.int64)

    @property
    def n_images(self) -> int:
        return len(np.unique(self.groups))

    def comparison(self) -> stats.Comparison | None:
        """Nested blend minus nested reference, paired over images and runs; None without both."""
        if self.nested is None or self.reference_nested is None:
            return None
        return stats.compare_folds(self.nested, self.reference_nested, self.groups, self.fold_of)

    def score(self) -> tuple[str, float]:
        """What is known of its error: the nested MAE, or with one fold the in-sample out-of-fold MAE."""
        if self.nested is not None:
            return "nested out-of-fold MAE", float(np.abs(self.nested).mean())
        in_sample = self.calibration.apply(self.predicted) - self.truth
        return "out-of-fold MAE (chosen on the same images)", float(np.abs(in_sample).mean())

    def to_dict(self) -> dict:
        """What the export's log records of it."""
        label, mae = self.score()
        c, base = self.comparison(), self.reference_nested
        return {
            "weights": {f"trial {t}": float(w) for t, w in zip(self.trials, self.weights)},
            "calibration": self.calibration.to_dict(),
            "folds": self.folds,
            "n_images": self.n_images,
            "score": label,
            "mae": mae,
            "reference": self.reference,
            "reference_nested_mae": None if base is None else float(np.abs(base).mean()),
            "nested_vs_reference": None if c is None else c.to_dict(),
            "residuals_scaled": self.normalised,
            "out_of_fold_coverage_by_tercile": self.terciles,
        }


def oof_counts(finalists: list[Finalist], folds: list[int]) -> tuple[np.ndarray, ...]:
    """Every finalist's out-of-fold counts over ``folds``, with the tiles' true counts, images and folds.

    Returns ``counts`` (M, N), then ``truth``, ``groups`` and ``fold_of`` (N,). A run's count is
    its true count plus its error (counting chosen out of sample on its fold).
    """
    truth = np.concatenate([finalists[0].runs[k].user_attrs["val_counts"]["true"] for k in folds]).astype(float)
    errors, groups, fold_of = zip(*(f.out_of_fold(folds) for f in finalists))
    if any(not np.array_equal(g, groups[0]) for g in groups):  # same folds, same tiles: anything else is a bug
        raise ValueError(f"finalists {[f.trial for f in finalists]} were scored on different tiles")
    return truth + np.stack(errors), truth, groups[0], fold_of[0]


def make_blend(finalists: list[Finalist], folds: list[int], only: Finalist | None = None) -> Blend:
    """The blend of the ready ``finalists`` over ``folds`` (of ``only`` alone, with weight 1, if given)."""
    counts, truth, groups, fold_of = oof_counts(finalists, folds)
    index = [finalists.index(only)] if only is not None else list(range(len(finalists)))
    picked = counts[index]
    weights, calibration = ensemble.choose(picked, truth, groups)
    predicted = calibration.apply(weights @ picked, rounded=False)
    normalised, terciles = intervals.choose_normalised(predicted, truth, groups, fold_of)
    base = next((i for i, f in enumerate(finalists) if is_reference_role(f.role)), None)
    trials = [finalists[i].trial for i in index]
    blend = Blend(trials, weights, calibration, folds, predicted, truth, groups, fold_of, normalised, terciles)
    if len(folds) > 1:
        blend.nested = ensemble.nested_errors(picked, truth, groups, fold_of)
        if base is not None and index != [base]:
            blend.reference = finalists[base].trial
            blend.reference_nested = ensemble.nested_errors(counts[[base]], truth, groups, fold_of)
    return blend


def ready(finalists: list[Finalist]) -> tuple[list[Finalist], list[int]]:
    """The finalists with runs on every fold all planned finalists share, and those folds (as the verdict's)."""
    folds = common_folds([f for f in finalists if f.role != EARLIER])
    return [f for f in finalists if folds and set(folds) <= set(f.runs)], folds


def stage_blend(finalists: list[Finalist], only: int | None = None) -> Blend | None:
    """The blend of the stage's finalists (of finalist ``only`` alone if given), or None before a fold is shared."""
    staged, folds = ready(finalists)
    match = [f for f in staged if f.trial == only]
    if not staged or (only is not None and not match):
        return None
    return make_blend(staged, folds, match[0] if match else None)


def blend_lines(finalists: list[Finalist]) -> list[str]:
    """What the verdict and the note say of the blend: its weights, counting, nested score and intervals."""
    b = stage_blend(finalists)
    if b is None:
        return []
    weights = ", ".join(f"trial {t} {w:.3f}" for t, w in zip(b.trials, b.weights))
    lines = [
        f"Weights out of fold (greedy ensemble selection, {ensemble.STEPS} steps, over {b.n_images} images): "
        f"{weights}; the count is {b.calibration.text()}."
    ]
    label, mae = b.score()
    c = b.comparison()
    if c is None:
        lines.append(f"Its {label}: {mae:.3f}.")
    else:
        ref = f"the reference's models (trial {b.reference}) chosen the same way {mae - c.diff:.3f}"
        tail = f"no interval: {c.too_few}" if c.too_few else f"95% interval {c.low:+.3f} to {c.high:+.3f}"
        lines.append(
            f"Nested cross-fitting (weights and counting chosen on the other folds, scored on the fold held out): "
            f"the blend {mae:.3f}, {ref}: {c.diff:+.3f} ({tail})."
        )
    scaled = "scaled by sqrt(count + 1)" if b.normalised else "unscaled"
    cover = ", ".join("-" if np.isnan(v) else f"{v:.2f}" for v in b.terciles)  # NaN: a tercile of tied counts
    lines.append(
        f"Intervals: CV+ from out-of-fold residuals ({scaled}); {intervals.LEVEL:.0%} coverage out of fold "
        f"by count tercile {cover}."
    )
    return lines
