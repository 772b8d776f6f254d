"""Tests of search/results/intervals.py: CV+ coverage, images weighted alike, the count-size scale."""

import numpy as np
import pytest

from search.results import intervals


def exchangeable(n_images, tiles=2, seed=0, spread=lambda mu: 2.0):
    """Truth, a fold model's prediction (one per fold, biased differently) and images of ``tiles`` tiles."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_images), tiles)
    mu = rng.uniform(0, 40, len(groups))
    truth = np.round(mu + rng.normal(0, 1, len(groups)) * spread(mu))
    return mu, truth, groups


def cv_plus_coverage(level, spread, normalised, n=2000, seed=0):
    """Coverage of CV+ intervals (2 folds, models biased by +-0.5) of ``n`` new tiles, and their truth's centre."""
    mu, truth, groups = exchangeable(300, seed=seed, spread=spread)
    folds = np.arange(300)[groups] % 2
    bias = np.array([0.5, -0.5])
    predicted = mu + bias[folds]
    residuals = np.abs(truth - predicted) / intervals.count_scale(predicted, normalised)
    new_mu, new_truth, _ = exchangeable(n // 2, seed=seed + 100, spread=spread)
    centres = new_mu[None, :] + bias[folds][:, None]
    low, high = intervals.cv_plus(centres, residuals, groups, level, normalised)
    assert (low <= high).all()
    return (low <= new_truth) & (new_truth <= high), new_mu


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_cv_plus_covers_about_the_level_on_exchangeable_data(level):
    covered, _ = cv_plus_coverage(level, lambda mu: 2.0, normalised=False)
    assert level - 0.03 <= covered.mean() <= level + 0.04


def test_scaled_residuals_keep_coverage_even_across_count_sizes():
    spread = lambda mu: 0.5 * np.sqrt(mu + 1)  # noqa: E731  errors that grow with the count
    plain, mu = cv_plus_coverage(0.9, spread, normalised=False)
    scaled, _ = cv_plus_coverage(0.9, spread, normalised=True)
    small, large = mu < 13, mu > 27
    assert plain[small].mean() - plain[large].mean() > 0.1  # plain: too wide for small counts, too narrow for large
    assert abs(scaled[small].mean() - scaled[large].mean()) < 0.06


def test_the_choice_of_scale_follows_what_keeps_coverage_even():
    for spread, expected in ((lambda mu: 0.5 * np.sqrt(mu + 1), True), (lambda mu: 2.0, False)):
        mu, truth, groups = exchangeable(600, tiles=1, seed=3, spread=spread)
        normalised, terciles = intervals.choose_normalised(mu, truth, groups, groups % 2)
        assert normalised is expected and len(terciles) == 3


def test_every_image_weighs_alike_however_many_tiles_it_has():
    weights = intervals.image_weights(np.array([0, 0, 0, 0, 1, 2]))
    np.testing.assert_allclose(weights, [0.25] * 4 + [1, 1])
    # One image of many tiny residuals does not pull the quantile down as 100 tiles would.
    values = np.concatenate([np.zeros(100), np.arange(1, 10.0)])
    groups = np.concatenate([np.zeros(100, int), np.arange(1, 10)])
    q = intervals.upper_quantile(values, intervals.image_weights(groups), 0.5, 10)
    assert q == 5.0


def test_too_few_images_for_the_level_give_an_unbounded_interval():
    low, high = intervals.cv_plus(np.zeros((3, 2)), np.ones(3), np.arange(3), level=0.9)
    assert np.isinf(high).all() and np.isinf(low).all()


def test_fold_coverage_judges_each_fold_by_the_other_folds_residuals():
    predicted = np.zeros(40)
    truth = np.concatenate([np.ones(20), 3 * np.ones(20)])
    folds = (np.arange(40) >= 20).astype(int)
    covered = intervals.fold_coverage(predicted, truth, np.arange(40), folds, 0.9, normalised=False)
    np.testing.assert_array_equal(covered, np.arange(40) < 20)  # 1 <= 3 covered, 3 > 1 not


def test_the_fewest_images_a_level_needs():
    assert intervals.min_images(0.9) == 9 and intervals.min_images(0.8) == 4 and intervals.min_images(0.5) == 1


def images_of_tiles(n_images, seed, tiles=4):
    """Tiles whose errors share their image's bias: predictions, truth and images."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_images), tiles)
    mu = rng.uniform(5, 20, len(groups))
    truth = np.round(mu + rng.normal(0, 2, n_images)[groups] + rng.normal(0, 0.5, len(groups)))
    return mu, truth, groups


def test_whole_image_intervals_from_summed_residuals_cover_what_tile_residuals_miss():
    mu, truth, groups = images_of_tiles(400, seed=0)
    new_mu, new_truth, new_groups = images_of_tiles(2000, seed=1)
    whole_mu = np.bincount(new_groups, weights=new_mu)
    whole_truth = np.bincount(new_groups, weights=new_truth)
    centres = np.broadcast_to(whole_mu, (400, len(whole_mu)))
    residuals, first = intervals.image_residuals(mu, truth, groups)
    assert len(residuals) == 400 and (groups[first] == np.arange(400)).all()
    low, high = intervals.cv_plus(centres, residuals, groups[first], 0.9, normalised=True)
    covered = ((low <= whole_truth) & (whole_truth <= high)).mean()
    assert 0.87 <= covered <= 0.94
    # The tiles' own residuals, scaled the same way, miss the bias the tiles of an image share.
    tile_residuals = np.abs(truth - mu) / intervals.count_scale(mu)
    tile_centres = np.broadcast_to(whole_mu, (len(mu), len(whole_mu)))
    low, high = intervals.cv_plus(tile_centres, tile_residuals, groups, 0.9, normalised=True)
    assert ((low <= whole_truth) & (whole_truth <= high)).mean() < 0.8
