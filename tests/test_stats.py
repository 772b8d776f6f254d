"""Out-of-sample counting choice, uncertainty over source images, and the study's verdict."""

import numpy as np
import optuna
import pytest

from search import summary
from search.results import stats
from search.results.verdict import gain, gain_line


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


def _study(best_errors, base_errors, groups):
    s = optuna.create_study(study_name="cells")
    s.set_user_attr("val_groups", [int(g) for g in groups])
    s.set_user_attr("folder", "cells-00000000")
    shown = {"value_se": 0.1, "counting_name": "watershed +0", "val_mae_reference_counting": 3.0}
    for errors, attrs in ((base_errors, {"baseline": True}), (best_errors, {})):
        s.add_trial(
            optuna.trial.create_trial(
                value=float(np.abs(errors).mean()),
                params={},
                distributions={},
                user_attrs={**attrs, **shown, "val_errors": [int(e) for e in errors]},
            )
        )
    return s


def test_summary_calls_a_small_gain_not_significant():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(30), 4)
    base = rng.integers(-4, 5, size=120)
    best = base.copy()
    best[:3] = 0  # slightly better on a few tiles: a gain well inside the noise
    line = gain_line(_study(best, base, groups))
    assert gain(_study(best, base, groups)).comparison.diff == pytest.approx((np.abs(best) - np.abs(base)).mean())
    assert "NOT a significant gain" in line and "reference is the safe choice" in line


@pytest.mark.parametrize("gain_is_clear", [False, True])
def test_summary_offers_the_baseline_export_only_when_the_gain_is_not_significant(in_tmp, capsys, gain_is_clear):
    groups = np.repeat(np.arange(30), 4)
    base = np.random.default_rng(4).integers(2, 6, size=120)
    best = np.zeros(120, int) if gain_is_clear else base - (np.arange(120) < 3)
    summary.summarize(_study(best, base, groups), "sqlite:///studies/cells.db", 2)
    out = capsys.readouterr().out
    assert "export: python -m search.export --study-name cells" in out
    assert ("--trial 0" in out) is not gain_is_clear


def test_summary_calls_a_large_gain_significant():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(30), 4)
    base = rng.integers(2, 6, size=120)
    line = gain_line(_study(np.zeros(120, int), base, groups))
    assert line.endswith("a significant gain") and "trial 1 against the reference (trial 0)" in line


def test_summary_when_the_baseline_is_best_or_missing():
    groups = np.arange(10)
    assert "is the best trial" in gain_line(_study(np.full(10, 3), np.zeros(10, int), groups))
    assert "has not finished" in gain_line(optuna.create_study())


def test_one_validation_image_gives_no_standard_error_and_no_verdict():
    groups = np.zeros(20, int)  # every validation tile from one source image
    rng = np.random.default_rng(5)
    base = rng.integers(2, 6, size=20)
    assert stats.mae_se(base, groups) is None
    result = stats.compare(np.zeros(20), base, groups)
    assert not result.significant and result.low is None and "low" not in result.to_dict()
    assert result.too_few == "1 validation image (an interval needs 5)"
    line = gain_line(_study(np.zeros(20, int), base, groups))
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
