"""Tests of search/results/blend.py: the finalists' blend read from their fold runs, its counts and intervals."""

import numpy as np
import pytest

from search.results import blend
from search.results.verdict import Finalist


class Run:
    """A stand-in for a complete finalist run: its scored tiles, their errors and true counts."""

    def __init__(self, errors, groups, truth):
        self.value = float(np.abs(errors).mean())
        self.user_attrs = {
            "val_errors": [int(e) for e in errors],
            "val_groups": [int(g) for g in groups],
            "val_counts": {"true": [int(t) for t in truth], "pred": [int(t + e) for t, e in zip(truth, errors)]},
        }


def staged(biases=(2, -2, 0), noise=(1, 1, 4), n_images=60, n_folds=3, seed=0):
    """Finalists (trial 1, 0 the reference, 5) whose out-of-fold counts err by ``bias`` give or take ``noise``."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_images), 2)
    folds = groups % n_folds
    truth = rng.integers(0, 30, len(groups))
    out = []
    for trial, role, bias, sd in zip((1, 0, 5), ("best", "reference", "runner-up"), biases, noise):
        errors = np.round(bias + rng.normal(0, sd, len(groups)))
        runs = {k: Run(errors[folds == k], groups[folds == k], truth[folds == k]) for k in range(n_folds)}
        out.append(Finalist(trial, role, {}, n_folds, runs))
    return out


def test_the_blend_weighs_finalists_of_opposite_bias_and_drops_the_noisy_one():
    b = blend.stage_blend(staged())
    assert b.trials == [1, 0, 5] and b.weights.sum() == pytest.approx(1) and (b.weights >= 0).all()
    assert b.weight(1) == pytest.approx(0.5, abs=0.15) and b.weight(0) == pytest.approx(0.5, abs=0.15)
    assert b.weight(5) < 0.2 and b.folds == [0, 1, 2] and b.n_images == 60
    label, mae = b.score()
    assert label == "nested out-of-fold MAE" and mae == pytest.approx(np.abs(b.nested).mean())
    c = b.comparison()  # the blend against the reference's models chosen the same way
    assert b.reference == 0 and c.diff < 0 and c.low is not None


def test_one_finalist_alone_has_weight_1_and_its_own_calibration():
    b = blend.stage_blend(staged(), only=1)
    assert b.trials == [1] and b.weights.tolist() == [1.0]
    assert b.calibration.form != "none" and abs(b.calibration.shift + 2) < 0.6  # its +2 bias taken off
    assert blend.stage_blend(staged(), only=7) is None


def test_counts_and_intervals_of_new_tiles_come_from_the_members_counts():
    b = blend.stage_blend(staged())
    used = b.used()
    keys = [(t, k) for t in used for k in (None, *b.folds)]
    counts = np.array([[10.0, 4.0, 20.0]] * len(keys))
    final = b.counts(counts, keys)
    np.testing.assert_allclose(final, b.calibration.apply(np.array([10.0, 4.0, 20.0])))
    low, high = b.intervals(counts, keys, 0.9)
    assert (low <= final).all() and (final <= high).all() and (low >= 0).all()
    assert low.dtype.kind == "i" and (high - low > 0).all()
    # A whole image of 100 tiles' area and 100 times the count gets a wider interval.
    whole_low, whole_high = b.intervals(counts * 100, keys, 0.9, area=100, whole=True)
    assert (whole_high - whole_low > high - low).all()


def test_no_blend_before_a_fold_is_shared_and_lines_name_the_weights():
    finalists = staged()
    assert "trial 1 0." in blend.blend_lines(finalists)[0]
    assert "Nested cross-fitting" in blend.blend_lines(finalists)[1]
    finalists[0].runs = {}
    finalists[1].runs = {}
    finalists[2].runs = {}
    assert blend.stage_blend(finalists) is None and blend.blend_lines(finalists) == []


def test_one_fold_gives_weights_without_a_nested_estimate():
    finalists = staged()
    for f in finalists:
        f.runs = {0: f.runs[0]}
    b = blend.stage_blend(finalists)
    assert b.nested is None and b.comparison() is None
    assert b.score()[0] == "out-of-fold MAE (chosen on the same images)"


def test_too_few_out_of_fold_images_for_the_level_give_no_intervals():
    b = blend.stage_blend(staged(n_images=8, n_folds=2))
    keys = [(t, k) for t in b.used() for k in (None, 0, 1)]
    counts = np.full((len(keys), 2), 5.0)
    assert b.intervals(counts, keys, 0.9) is None  # 8 images: a 90% interval needs 9
    assert b.intervals(counts, keys, 0.8) is not None


def counts_of(truth, rng, models):
    """Counts of ``truth`` by ``models`` ``(trial, fold, bias)``: each tile's difficulty shared, plus own noise."""
    hard = rng.normal(0, 2, len(truth))
    return np.round(truth + hard + np.array([[b] for *_, b in models]) + rng.normal(0, 0.5, (len(models), len(truth))))


def test_the_blends_intervals_cover_about_90_percent_of_new_tiles():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(150), 2)
    folds, truth = groups % 3, rng.integers(0, 30, 300)
    models = [(t, k, b) for t, b in ((1, 2), (0, -2), (5, 0)) for k in range(3)]
    oof = counts_of(truth, rng, models)
    finalists = []
    for trial, role in ((1, "best"), (0, "reference"), (5, "runner-up")):
        runs = {}
        for k in range(3):
            row, held = models.index(next(m for m in models if m[:2] == (trial, k))), folds == k
            runs[k] = Run(oof[row, held] - truth[held], groups[held], truth[held])
        finalists.append(Finalist(trial, role, {}, 3, runs))
    b = blend.stage_blend(finalists)
    new_truth = rng.integers(0, 30, 3000)
    new_models = models + [(t, None, bias) for t, bias in ((1, 2), (0, -2), (5, 0))]
    low, high = b.intervals(counts_of(new_truth, rng, new_models), [m[:2] for m in new_models], 0.9)
    covered = ((low <= new_truth) & (new_truth <= high)).mean()
    assert 0.86 <= covered <= 0.97  # integer counts tie at the quantile: a little above the level
