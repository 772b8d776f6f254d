"""search.results.stats: out-of-sample counting choice, uncertainty over source images, folds and ensembles."""

import numpy as np
import pytest
from helpers import fold_runs, gain_study

from search.results import stats
from search.results.verdict import gain_line


def test_crossfit_never_scores_a_tile_with_a_setting_chosen_on_its_own_half():
    groups = np.repeat(np.arange(10), 3)
    in_b = stats.halves(groups, seed=0)
    # Setting 0 is perfect on half A and bad on B, setting 1 the reverse, setting 2 mediocre everywhere.
    errors = np.stack([np.where(in_b, 5, 0), np.where(in_b, 0, 5), np.full(30, 2)]).astype(float)
    crossfit, chosen, out_of_sample = stats.crossfit_errors(errors, groups, seed=0)
    assert out_of_sample
    assert chosen == 2  # best on all tiles
    # In sample, 0 or 1 look perfect on their own half; chosen on the other half they cost 5 per tile.
    np.testing.assert_array_equal(crossfit, np.full(30, 5.0))


def test_halves_keep_images_together_and_split_them_evenly():
    groups = np.repeat(np.arange(9), [1, 2, 3, 4, 5, 1, 2, 3, 4])
    in_b = stats.halves(groups, seed=3)
    for g in np.unique(groups):
        assert len(set(in_b[groups == g])) == 1
    assert abs(len(np.unique(groups[in_b])) - len(np.unique(groups[~in_b]))) <= 1


def test_group_bootstrap_is_wider_than_a_tile_bootstrap_when_tiles_of_an_image_agree():
    rng = np.random.default_rng(0)
    per_image = rng.normal(0, 1, size=40)
    groups = np.repeat(np.arange(40), 8)
    values = per_image[groups] + rng.normal(0, 0.1, size=len(groups))  # tiles of an image agree
    by_image = stats.bootstrap_means(values, groups).std()
    by_tile = stats.bootstrap_means(values, np.arange(len(values))).std()
    assert by_image > 2 * by_tile
    assert by_image == pytest.approx(per_image.std() / np.sqrt(40), rel=0.25)


def test_compare_flags_only_clear_differences():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(50), 4)
    a = rng.integers(0, 4, size=200)
    assert stats.compare(a - 2, a - 2, groups).diff == 0
    noisy = stats.compare(a, rng.permutation(a), groups)
    assert not noisy.significant and noisy.low < 0 < noisy.high
    clear = stats.compare(np.zeros(200), a + 1, groups)
    assert clear.significant and clear.high < 0 and clear.is_gain
    assert clear.diff == pytest.approx(-np.abs(a + 1).mean()) and clear.to_dict()["significant"] is True


def test_one_validation_image_gives_no_standard_error_and_no_verdict():
    groups = np.zeros(20, int)  # every validation tile from one source image
    rng = np.random.default_rng(5)
    base = rng.integers(2, 6, size=20)
    assert stats.mae_se(base, groups) is None
    result = stats.compare(np.zeros(20), base, groups)
    assert not result.significant and result.low is None and "low" not in result.to_dict()
    assert result.too_few == "1 validation image (an interval needs 5)"
    line = gain_line(gain_study(np.zeros(20, int), base, groups))
    assert "no interval, too few to estimate one: 1 validation image" in line and "significant" not in line
    # The counting choice cannot be held out either, and says so.
    _, _, out_of_sample = stats.crossfit_errors(np.stack([base, base - 1]).astype(float), groups)
    assert out_of_sample is False


def test_an_interval_needs_min_images():
    rng = np.random.default_rng(6)
    for n_images, enough in ((stats.MIN_IMAGES - 1, False), (stats.MIN_IMAGES, True)):
        groups = np.repeat(np.arange(n_images), 4)
        assert (stats.mae_se(rng.integers(0, 5, len(groups)), groups) is not None) is enough
        assert (stats.compare(np.zeros(len(groups)), np.ones(len(groups)), groups).too_few is None) is enough


@pytest.mark.parametrize("df, quantile", [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (1e9, 1.960)])
def test_t_quantile_matches_the_tables(df, quantile):
    assert stats.t_quantile(df) == pytest.approx(quantile, abs=2e-3)


# --- finalist runs: ensembles and comparisons over folds ----------------------------


def test_ensemble_counts_are_the_rounded_mean_and_no_worse_than_the_members():
    rng = np.random.default_rng(0)
    for _ in range(50):
        truth = rng.integers(0, 30, 40)
        counts = np.maximum(truth + rng.integers(-4, 5, (int(rng.integers(1, 6)), 40)), 0)
        ensemble = stats.ensemble_counts(counts)
        np.testing.assert_array_equal(ensemble, np.floor(counts.mean(0) + 0.5))
        member_mae = np.abs(counts - truth).mean(1)
        assert np.abs(ensemble - truth).mean() <= member_mae.mean() + 0.5
        # On errors (counts minus integer truth) it gives the ensemble's errors.
        np.testing.assert_array_equal(stats.ensemble_counts(counts - truth), ensemble - truth)
    assert stats.ensemble_counts([[1, 2], [2, 3]]).tolist() == [2, 3]  # halves round up


def test_runs_that_disagree_more_than_their_images_explain_are_not_a_significant_gain():
    steady = stats.compare_folds(*fold_runs(run_spread=0))
    assert steady.is_gain and steady.high < 0 and steady.se_runs == 0
    noisy = stats.compare_folds(*fold_runs(run_spread=2))
    a, b, groups, _ = fold_runs(run_spread=2)
    # Over images alone the difference still looks clear; the runs' disagreement undoes it.
    images_only = stats.compare(a, b, groups)
    assert images_only.significant and images_only.high < 0
    assert not noisy.significant and noisy.low < 0 < noisy.high
    assert noisy.se_runs > noisy.se_images
    assert noisy.se == pytest.approx(np.hypot(noisy.se_runs, noisy.se_images))
