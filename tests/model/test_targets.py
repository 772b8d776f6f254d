"""model.targets: disks and density maps drawn at the dots, and the counters that count them."""

import numpy as np
import pytest
from helpers import disc_set

from model.count import count_setting
from model.targets import density_targets, disk_targets

T = 32  # the tiny tiles' side


# --- disk targets ---------------------------------------------------------------


def test_disk_values_fall_off_with_distance():
    disk = disk_targets(np.array([[0, 10, 10]]), 1, (T, T), 3)[0]
    assert disk.dtype == np.float32 and disk.min() == 0 and disk.max() == 1
    # clip(radius + 0.5 - distance, 0, 1) along a row through the centre.
    np.testing.assert_allclose(disk[10, 6:15], [0, 0.5, 1, 1, 1, 1, 1, 0.5, 0])
    assert disk[12, 12] == pytest.approx(3.5 - np.hypot(2, 2))
    # A centre between pixels gives a disk symmetric about it.
    between = disk_targets(np.array([[0, 10.5, 10.5]]), 1, (T, T), 3)[0]
    np.testing.assert_allclose(between[6:16, 6:16], between[6:16, 6:16][::-1, ::-1])


@pytest.mark.parametrize("radius", [2, 3, 4, 5, 2.5])
def test_disk_area_follows_the_radius(radius):
    disk = disk_targets(np.array([[0, 16, 16]]), 1, (T, T), radius)[0]
    assert abs((disk > 0.5).sum() - np.pi * radius**2) < 2 * np.pi * radius  # about pi r^2, up to its rim
    assert (disk > 0).sum() > (disk > 0.5).sum()  # a soft rim outside the hard disk


def test_overlapping_disks_take_the_larger_value():
    a, b = np.array([[0, 10, 10]]), np.array([[0, 10, 13]])
    both = disk_targets(np.vstack([a, b]), 1, (T, T), 3)
    np.testing.assert_array_equal(both, np.maximum(disk_targets(a, 1, (T, T), 3), disk_targets(b, 1, (T, T), 3)))
    assert both.max() == 1


def test_disks_at_tile_edges_are_cut_and_stay_in_their_tile():
    corner = disk_targets(np.array([[1, 0, 0], [1, 31.9, 31.9]]), 3, (T, T), 3)
    assert not corner[0].any() and not corner[2].any()
    # The top-left corner holds the quarter disk of a centre at (0, 0): what the full disk has there.
    full = disk_targets(np.array([[0, 8, 8]]), 1, (T, T), 3)[0]
    np.testing.assert_array_equal(corner[1, :5, :5], full[8:13, 8:13])
    # Nothing wraps round to the far edges; the other point's disk fills the far corner.
    assert not corner[1, 5:27, :].any() and not corner[1, :, 5:27].any()
    assert corner[1, 31, 31] == 1


def test_no_points_no_disks_and_radius_checked():
    assert not disk_targets(np.zeros((0, 3)), 2, (T, T), 3).any()
    with pytest.raises(ValueError, match="radius must be positive"):
        disk_targets(np.zeros((0, 3)), 2, (T, T), 0)


def test_counters_count_separate_disks():
    rng = np.random.default_rng(0)
    points = [(t, 5 + 11 * i, 5 + 11 * j) for t in range(4) for i in range(3) for j in range(3) if rng.random() < 0.6]
    disks = disk_targets(np.array(points, float), 4, (T, T), 3)
    expected = np.bincount([p[0] for p in points], minlength=4)
    for counter in ("components", "watershed"):
        assert count_setting(disks, {"counter": counter, "offset": 0}).tolist() == expected.tolist()


# --- density targets -------------------------------------------------------------


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.5])
def test_density_sums_to_the_dot_count_away_from_edges(sigma):
    size = 64  # every dot at least 4 sigma from the edges
    points = np.array([[0, 26, 26], [0, 28, 29], [0, 36.5, 32.25], [2, 32, 32]], float)
    density = density_targets(points, 3, (size, size), sigma)
    assert density.dtype == np.float32 and density.min() >= 0
    np.testing.assert_allclose(density.sum((1, 2)), [3, 0, 1], atol=1e-5)
    # Centred on its dot, and touching neighbours add up (no maximum as with disks).
    single = density_targets(points[3:], 3, (size, size), sigma)[2]
    assert np.unravel_index(single.argmax(), single.shape) == (32, 32)
    around = single[1:, 1:]  # centred on (31, 31) of it
    np.testing.assert_allclose(around, around[::-1, ::-1], atol=1e-7)
    each = [density_targets(points[i : i + 1], 3, (size, size), sigma)[0] for i in range(3)]
    np.testing.assert_allclose(density[0], sum(each), atol=1e-6)


def test_density_cut_by_the_tile_edge_keeps_only_its_part_inside():
    corner = density_targets(np.array([[0, 0, 0]], float), 1, (T, T), 2)[0]
    assert 0.25 < corner.sum() < 0.4  # a quarter, and the row and column through the dot
    full = density_targets(np.array([[0, 16, 16]], float), 1, (T, T), 2)[0]
    np.testing.assert_allclose(corner[:9, :9], full[16:25, 16:25], atol=1e-7)  # normalised before cropping
    assert density_targets(np.zeros((0, 3)), 2, (T, T), 2).shape == (2, T, T)
    with pytest.raises(ValueError, match="sigma must be positive"):
        density_targets(np.zeros((0, 3)), 2, (T, T), 0)


def test_density_counter_counts_density_targets():
    arrays = disc_set(30, seed=1)
    density = density_targets(arrays["points"], 30, (T, T), 2)
    assert count_setting(density, {"counter": "density", "offset": 0}).tolist() == arrays["counts"].tolist()
