"""search.results.verdict: the gain over the reference, and the finalist stage's verdict and table."""

import numpy as np
import optuna
import pytest
from helpers import fold_runs, gain_study

from search.results import stats
from search.results.verdict import Finalist, finalist_rows, gain, gain_line, stage_verdict, stage_verdict_line

# --- the search's best trial against the reference ---------------------------------


def test_summary_calls_a_small_gain_not_significant():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(30), 4)
    base = rng.integers(-4, 5, size=120)
    best = base.copy()
    best[:3] = 0  # slightly better on a few tiles: a gain well inside the noise
    line = gain_line(gain_study(best, base, groups))
    assert gain(gain_study(best, base, groups)).comparison.diff == pytest.approx((np.abs(best) - np.abs(base)).mean())
    assert "NOT a significant gain" in line and "reference is the safe choice" in line


def test_summary_calls_a_large_gain_significant():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(30), 4)
    base = rng.integers(2, 6, size=120)
    line = gain_line(gain_study(np.zeros(120, int), base, groups))
    assert line.endswith("a significant gain") and "trial 1 against the reference (trial 0)" in line


def test_summary_when_the_baseline_is_best_or_missing():
    groups = np.arange(10)
    assert "is the best trial" in gain_line(gain_study(np.full(10, 3), np.zeros(10, int), groups))
    assert "has not finished" in gain_line(optuna.create_study())


# --- the finalist stage ---------------------------------------------------------------


class Run:
    """A stand-in for a complete finalist run: its value and its scored tiles."""

    def __init__(self, errors, groups):
        self.value = float(np.abs(errors).mean())
        self.user_attrs = {"val_errors": list(errors), "val_groups": list(groups)}


def staged_pair(a, b, groups, folds):
    def finalist(trial, role, errors):
        runs = {k: Run(errors[folds == k], groups[folds == k]) for k in np.unique(folds).tolist()}
        return Finalist(trial, role, {}, 3, runs)

    return [finalist(3, "best", a), finalist(0, "reference", b)]


@pytest.mark.parametrize(
    "n_folds, n_images, reason",
    [
        (1, 42, "1 training run per finalist (a spread needs 3)"),
        (2, 42, "2 training runs per finalist (a spread needs 3)"),
        (3, 3, "3 out-of-fold images (an interval needs 5)"),
    ],
)
def test_too_few_runs_or_images_give_a_sentence_not_an_interval(n_folds, n_images, reason):
    # Runs that agree exactly: over images alone, 2 folds would look like a clear gain.
    a, b, groups, folds = fold_runs(run_spread=0, n_images=n_images, n_folds=max(n_folds, 2))
    if n_folds == 1:
        a, b, groups, folds = a[folds == 0], b[folds == 0], groups[folds == 0], folds[folds == 0]
    result = stats.compare_folds(a, b, groups, folds)
    assert not result.significant and result.low is None
    assert result.too_few == reason
    line = stage_verdict_line(staged_pair(a, b, groups, folds))
    assert "no interval, too few to estimate one" in line and "95%" not in line
    rows = finalist_rows(staged_pair(a, b, groups, folds))
    assert rows[0]["out-of-fold"] == pytest.approx(np.abs(a).mean())
    assert rows[1]["fold 1"] == (None if n_folds == 1 else pytest.approx(np.abs(b[folds == 1]).mean()))


def test_verdict_picks_the_lowest_out_of_fold_mae_and_states_the_claim():
    a, b, groups, folds = fold_runs(run_spread=0)
    best, base = staged_pair(a, b, groups, folds)
    line = stage_verdict_line([best, base])
    assert line.startswith("trial 3 has the lowest out-of-fold MAE")
    assert "the search beat the reference configuration" in line
    assert line.endswith(": a significant gain")
    best.role, base.role = "reference", "best"  # the baseline is now the better one
    assert stage_verdict([base, best]).winner is best
    assert "keep the reference configuration" in stage_verdict_line([base, best])
