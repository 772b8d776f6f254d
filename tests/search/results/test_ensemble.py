"""Tests of search/results/ensemble.py: greedy weights, calibration, the nested estimate, on synthetic counts."""

import numpy as np
import pytest

from search.results import ensemble


def synthetic(n=300, seed=0):
    """True counts, an accurate member, a noisy one, and tiles in images of 3."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 30, n).astype(float)
    good = truth + rng.normal(0, 1, n)
    bad = truth + rng.normal(0, 4, n)
    return truth, np.stack([bad, good]), np.arange(n) // 3


def test_greedy_selection_recovers_the_better_member():
    truth, counts, _ = synthetic()
    weights = ensemble.greedy_weights(counts, truth)
    assert weights[1] > 0.9


def test_weights_are_non_negative_and_sum_to_1():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 20, 200).astype(float)
    counts = truth + rng.normal(0, 2, (5, 200)) + rng.normal(0, 1, (5, 1))
    weights = ensemble.greedy_weights(counts, truth, steps=25)
    assert weights.shape == (5,) and (weights >= 0).all() and weights.sum() == pytest.approx(1)
    assert np.allclose(weights * 25, np.round(weights * 25))  # multiples of one step


def test_greedy_weights_average_members_of_opposite_bias():
    truth = np.arange(100, dtype=float) % 20
    counts = np.stack([truth + 2, truth - 2, truth + 3])
    weights = ensemble.greedy_weights(counts, truth)
    np.testing.assert_allclose(weights, [0.5, 0.5, 0.0])


def test_calibration_removes_a_known_bias():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 30, 400).astype(float)
    mean = truth + 1.5 + rng.normal(0, 0.3, 400)
    calibration = ensemble.calibrate(mean, truth, np.arange(400) // 4)
    assert calibration.form in ("offset", "linear")
    assert abs((calibration.apply(mean) - truth).mean()) < 0.1
    assert np.abs(calibration.apply(mean) - truth).mean() < np.abs(mean - truth).mean() / 3


def test_calibration_fits_a_linear_map_of_the_count():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 40, 400).astype(float)
    mean = 0.8 * truth + rng.normal(0, 0.2, 400)  # a counter that misses a fifth of the cells
    calibration = ensemble.calibrate(mean, truth, np.arange(400) // 4)
    assert calibration.form == "linear" and calibration.scale == pytest.approx(1.25, abs=0.03)


def test_rounding_is_kept_only_when_it_costs_no_mae():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 30, 400).astype(float)
    # Means a quarter above the truth: rounding gives the truth back exactly.
    assert ensemble.calibrate(truth + 0.25, truth, np.arange(400)).rounded
    # Means 0.6 off, up or down at random: unrounded they miss by 0.6, rounded by 1.
    off = truth + rng.choice([-0.6, 0.6], 400)
    calibration = ensemble.calibrate(off, truth, np.arange(400))
    unrounded = np.abs(calibration.apply(off) - truth).mean()
    assert not calibration.rounded and unrounded < np.abs(calibration.apply(off, rounded=True) - truth).mean()


def test_calibrated_counts_are_never_negative_and_a_whole_image_gets_the_shift_per_tile():
    calibration = ensemble.Calibration("offset", 1.0, -2.0, rounded=False)
    np.testing.assert_allclose(calibration.apply([1.0, 5.0]), [0.0, 3.0])
    assert calibration.apply(np.array([100.0]), area=10)[0] == 80.0


def test_the_nested_estimate_is_not_lower_than_in_sample_on_noise():
    rng = np.random.default_rng(4)
    n, folds = 240, np.arange(240) % 2
    truth = rng.integers(0, 20, n).astype(float)
    gaps = []
    for seed in range(5):
        counts = truth + np.random.default_rng(seed).normal(0, 3, (6, n))  # members alike: any choice is luck
        weights, calibration = ensemble.choose(counts, truth, np.arange(n))
        in_sample = np.abs(calibration.apply(weights @ counts) - truth).mean()
        nested = np.abs(ensemble.nested_errors(counts, truth, np.arange(n), folds)).mean()
        gaps.append(nested - in_sample)
    assert np.mean(gaps) > 0


def test_nested_errors_are_chosen_without_the_fold_they_score():
    truth = np.zeros(100)
    counts = np.stack([np.where(np.arange(100) < 50, 0.0, 5.0), np.where(np.arange(100) < 50, 5.0, 0.0)])
    folds = (np.arange(100) >= 50).astype(int)
    # Each fold's best member is the other fold's worst: chosen elsewhere, every error is 5.
    errors = ensemble.nested_errors(counts, truth, np.arange(100), folds)
    np.testing.assert_allclose(np.abs(errors), 5)
