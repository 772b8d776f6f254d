"""model.count: every counter on hand-made probability maps with known counts, and where it finds them."""

import numpy as np
import pytest
from helpers import SIZE, discs

from model.count import COUNTERS, count_cells, count_components, count_density, count_setting, object_centroids
from model.scoring import count_errors, mae_by_setting
from model.watershed import count_watershed

THRESHOLDING = sorted(set(COUNTERS) - {"density"})  # the counters of probability maps


@pytest.mark.parametrize("method", sorted(COUNTERS))
def test_empty_map_counts_zero(method):
    counts = count_cells(np.zeros((3, SIZE, SIZE)), method)
    assert counts.tolist() == [0, 0, 0]
    assert counts.dtype == np.int64


@pytest.mark.parametrize("method", THRESHOLDING)
def test_single_disc_counts_one(method):
    assert count_cells(discs((32, 32)), method).tolist() == [1]


@pytest.mark.parametrize("method", THRESHOLDING)
def test_two_separate_discs_count_two(method):
    assert count_cells(discs((20, 20), (44, 44)), method).tolist() == [2]


def test_batch_counts_each_tile():
    batch = np.stack([discs((32, 32)), discs((20, 20), (44, 44)), np.zeros((SIZE, SIZE))])
    assert count_watershed(batch).tolist() == [1, 2, 0]
    assert count_components(batch).tolist() == [1, 2, 0]


@pytest.mark.parametrize("method", sorted(COUNTERS))
@pytest.mark.parametrize("offset", [1, -1, 3])
def test_offset_adds_exactly_offset(method, offset):
    prob = np.stack([discs((20, 20), (44, 44)), np.zeros((SIZE, SIZE))])
    base = count_cells(prob, method)
    assert count_cells(prob, method, offset=offset).tolist() == np.maximum(base + offset, 0).tolist()


@pytest.mark.parametrize("method", sorted(COUNTERS))
def test_negative_offset_never_gives_a_negative_count(method):
    empty = np.zeros((2, SIZE, SIZE), dtype=np.float32)
    assert count_setting(empty, {"counter": method, "offset": -1}).tolist() == [0, 0]
    # The objective scores the clipped counts too: an empty tile with no cells is exact.
    assert mae_by_setting(empty, [0, 0], [{"counter": method, "offset": -1}]) == [(0.0, 0.0)]


def test_density_counts_the_rounded_sum_of_each_tile():
    density = np.zeros((4, SIZE, SIZE), np.float32)
    density[0, 10:20, 10:20] = 0.03  # 3 cells
    density[1, :2, :] = 2.49 / (2 * SIZE)  # 2.49: rounds down
    density[2, 5, 5] = 2.5  # a half rounds up
    assert count_density(density).tolist() == [3, 2, 3, 0]
    assert count_setting(density, {"counter": "density", "offset": 1}).tolist() == [4, 3, 4, 1]
    with pytest.raises(ValueError, match="unknown parameter"):
        count_setting(density, {"counter": "density", "threshold": 0.5})


def test_density_below_zero_counts_no_cells_before_the_offset():
    # A regressed map may sum below 0: that is no cells, and the offset then adds to 0, as the
    # scoring (count once at offset 0, add each offset later) does.
    density = np.full((1, 8, 8), -3.0 / 64, np.float32)
    settings = [{"counter": "density", "offset": o} for o in (-1, 0, 2)]
    assert [count_setting(density, s).tolist() for s in settings] == [[0], [0], [2]]
    assert count_errors(density, [0], settings)[:, 0].tolist() == [0, 0, 2]


def test_offset_one_is_cv2_num_labels_including_background():
    # The student's count: cv2 num_labels, which includes the background label.
    prob = discs((20, 20), (44, 44))
    assert count_components(prob, offset=1).tolist() == [3]


@pytest.mark.parametrize("method", THRESHOLDING)
def test_threshold_decides_what_is_foreground(method):
    prob = np.maximum(discs((20, 20)), discs((44, 44), value=0.45))
    assert count_cells(prob, method, threshold=0.4).tolist() == [2]
    assert count_cells(prob, method, threshold=0.5).tolist() == [1]


def test_connectivity_changes_diagonal_touch():
    prob = np.zeros((SIZE, SIZE), dtype=np.float32)
    prob[10:14, 10:14] = 1.0
    prob[14:18, 14:18] = 1.0  # meets the first square only at a corner
    assert count_components(prob, connectivity=8).tolist() == [1]
    assert count_components(prob, connectivity=4).tolist() == [2]


def test_single_map_promoted_to_batch_of_one():
    assert count_cells(discs((32, 32)), "watershed").shape == (1,)


def test_bad_shape_raises():
    with pytest.raises(ValueError, match="shape"):
        count_cells(np.zeros(10))


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="unknown counting method 'blobs'"):
        count_cells(np.zeros((SIZE, SIZE)), "blobs")


def test_unknown_parameter_raises():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['min_distance'\]"):
        count_cells(np.zeros((SIZE, SIZE)), "components", min_distance=3)


@pytest.mark.parametrize(
    "method, params, match",
    [
        ("components", {"threshold": 0.0}, "threshold"),
        ("components", {"threshold": 1.0}, "threshold"),
        ("watershed", {"threshold": 1.5}, "threshold"),
        ("components", {"offset": 0.5}, "offset"),
        ("components", {"offset": True}, "offset"),
        ("components", {"connectivity": 6}, "connectivity"),
        ("watershed", {"min_distance": 0}, "min_distance"),
        ("watershed", {"min_distance": 2.5}, "min_distance"),
        ("watershed", {"min_area": -1}, "min_area"),
        ("watershed", {"edge_fraction": 1.5}, "edge_fraction"),
        ("watershed", {"edge_fraction": -0.1}, "edge_fraction"),
    ],
)
def test_bad_value_raises(method, params, match):
    with pytest.raises(ValueError, match=match):
        count_cells(np.zeros((SIZE, SIZE)), method, **params)


def test_good_numpy_scalar_values_accepted():
    counts = count_cells(
        discs((32, 32)), "watershed", threshold=np.float32(0.5), min_distance=np.int64(2), offset=np.int64(0)
    )
    assert counts.tolist() == [1]


# --- where the counted objects are ----------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        {"counter": "components", "threshold": 0.5, "offset": 1},
        {"counter": "watershed", "threshold": 0.4, "min_distance": 2, "min_area": 5, "edge_fraction": 0.5},
        {"counter": "watershed", "threshold": 0.5, "min_distance": 3, "min_area": 0, "edge_fraction": 0, "offset": -1},
    ],
)
def test_centroids_are_what_the_count_counts(setting):
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:90, :70]
    for _ in range(5):
        prob = np.zeros((90, 70), np.float32)
        for r, c in rng.integers(-3, 93, size=(rng.integers(0, 25), 2)):  # some cut by the border, some touching
            prob = np.maximum(prob, np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 12.0))
        centroids = object_centroids(prob, setting)
        assert count_setting(prob, setting).tolist() == [max(len(centroids) + setting.get("offset", 0), 0)]
        assert ((centroids >= 0) & (centroids < prob.shape)).all()


def test_centroid_of_a_disc_and_a_counter_without_positions():
    prob = np.zeros((40, 40), np.float32)
    rows, cols = np.mgrid[:40, :40]
    prob[(rows - 12) ** 2 + (cols - 25) ** 2 <= 9] = 1
    for counter in ("components", "watershed"):
        assert np.allclose(object_centroids(prob, {"counter": counter}), [[12, 25]])
    with pytest.raises(ValueError, match="unknown counter with object positions 'density'"):
        object_centroids(prob, {"counter": "density", "offset": 0})
