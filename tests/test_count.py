"""Tests for model.count and model.watershed on hand-made probability maps with known counts."""

import numpy as np
import pytest

from model.count import COUNTERS, count_cells, count_components, count_density, count_setting
from model.scoring import count_errors, mae_by_setting
from model.watershed import count_watershed

SIZE = 64
THRESHOLDING = sorted(set(COUNTERS) - {"density"})  # the counters of probability maps


def discs(*centres, radius=6.0, value=1.0, size=SIZE):
    """A (size, size) probability map with filled discs at (row, col) centres."""
    rows, cols = np.mgrid[:size, :size]
    prob = np.zeros((size, size), dtype=np.float32)
    for r, c in centres:
        prob[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = value
    return prob


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


def test_touching_discs_merge_for_components_but_split_for_watershed():
    touching = discs((32, 26), (32, 37))  # centres 11 px apart, radius 6: overlapping
    assert count_components(touching).tolist() == [1]
    assert count_watershed(touching).tolist() == [2]


def test_chain_of_three_touching_discs_splits_into_three():
    chain = discs((32, 16), (32, 27), (32, 38))
    assert count_components(chain).tolist() == [1]
    assert count_watershed(chain).tolist() == [3]


def test_small_fragment_at_tile_edge_not_counted_by_watershed():
    # Two whole discs inside, and a disc centred 4 px outside the top edge,
    # so only a thin cap of it (~14% of its area, centroid outside) is visible.
    prob = discs((32, 16), (40, 44), (-4, 40))
    assert count_watershed(prob).tolist() == [2]
    # The edge rule is what drops it: switched off, the cap counts.
    assert count_watershed(prob, edge_fraction=0).tolist() == [3]
    assert count_components(prob).tolist() == [3]


def test_disc_centred_just_inside_edge_still_counted():
    prob = discs((32, 16), (40, 44), (2, 40))  # centre inside, over half visible
    assert count_watershed(prob).tolist() == [3]


def test_min_area_drops_specks():
    prob = discs((32, 32))
    prob[5, 5] = 1.0  # one-pixel speck
    assert count_watershed(prob, min_area=5).tolist() == [1]
    assert count_watershed(prob, min_area=0).tolist() == [2]


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
