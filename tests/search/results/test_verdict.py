"""search.results.verdict: the gain over the reference, and the finalist stage's verdict and table."""

import numpy as np
import optuna
import pytest
from helpers import fold_runs, gain_study

from search.results import stats
from search.results.verdict import (
    Finalist,
    finalist_rows,
    finalist_text,
    gain,
    gain_line,
    safe_choice,
    stage_verdict,
    stage_verdict_line,
)
from search.roles import EARLIER

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


def test_a_stage_cut_short_before_the_references_first_run_has_no_verdict():
    a, b, groups, folds = fold_runs(run_spread=0)
    best, base = staged_pair(a, b, groups, folds)
    best.runs, base.runs = {0: best.runs[0]}, {}  # killed after the best trial's first fold run
    assert stage_verdict([best, base]) is None
    assert stage_verdict_line([best, base]) == "no fold has a finished run of every finalist yet"
    assert [row["out-of-fold"] for row in finalist_rows([best, base])] == [None, None]
    # A reference whose every run diverged will never have one: the others are compared, and it says why.
    base.diverged = [0, 1, 2]
    assert stage_verdict([best, base]).folds == [0]
    assert "the reference configuration (trial 0) diverged in every run" in stage_verdict_line([best, base])


def test_an_exact_tie_keeps_the_reference_and_is_worded_as_a_tie():
    a, _, groups, folds = fold_runs(run_spread=0)
    best, base = staged_pair(a, a.copy(), groups, folds)  # the same errors: out-of-fold MAEs equal exactly
    verdict = stage_verdict([best, base])
    assert verdict.winner is base and verdict.comparison is None
    line = stage_verdict_line([best, base])
    assert line.startswith("the reference (trial 0) ties trial 3 for the lowest out-of-fold MAE (")
    assert line.endswith("keep the reference configuration") and "beat" not in line
    assert safe_choice(optuna.create_study(), verdict) is None  # the default export is the reference's models


def test_runs_of_an_earlier_plan_are_not_said_to_follow_a_new_best():
    a, b, groups, folds = fold_runs(run_spread=0)
    best, base = staged_pair(a, b, groups, folds)
    # --finalists 3 then 2: the runner-up's runs are kept, though the search's best did not change.
    dropped = Finalist(5, EARLIER, {}, 3, dict(base.runs))
    intro, _, _ = finalist_text([best, base, dropped])
    assert "Runs of trial 5 finished under an earlier plan, which held it; this plan's 2 finalists do not." in intro
    assert "best changed" not in intro
