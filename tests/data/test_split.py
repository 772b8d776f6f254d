"""data.split: the seeded split of tiles, the split by source image, and a dots file's points split with it."""

import numpy as np
import pytest
from helpers import data_error, disc_set, dots_file, save_npz, tile_images, tile_masks

import data
from data import load_split, split_groups, split_indices

# --- split_indices ------------------------------------------------------------


def test_split_deterministic_and_seeded():
    a = split_indices(100, seed=3)
    b = split_indices(100, seed=3)
    c = split_indices(100, seed=4)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("n", [2, 5, 10, 101, 1439])
def test_split_partition(n):
    train, val = split_indices(n, 0.2, seed=0)
    assert len(np.intersect1d(train, val)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert len(train) >= 1 and len(val) >= 1


def test_split_sizes():
    train, val = split_indices(100)
    assert (len(train), len(val)) == (80, 20)
    train, val = split_indices(1439)
    assert (len(train), len(val)) == (1151, 288)
    assert len(split_indices(10, val_fraction=0.01)[1]) == 1
    assert len(split_indices(10, val_fraction=0.99)[0]) == 1


@pytest.mark.parametrize(
    "n, frac, message",
    [
        (1, 0.2, "need at least 2 tiles"),
        (0, 0.2, "need at least 2 tiles"),
        (10, 0.0, r"val_fraction must be in \(0, 1\)"),
        (10, 1.0, r"val_fraction must be in \(0, 1\)"),
        (10, -0.1, r"val_fraction must be in \(0, 1\)"),
        (2.5, 0.2, "n must be an integer"),
    ],
)
def test_split_rejects(n, frac, message):
    with pytest.raises(ValueError, match=message):
        split_indices(n, frac)


# --- split_groups ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_grouped_split_never_puts_one_group_on_both_sides(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 30, size=200)  # uneven group sizes
    train, val = data.split_groups(groups, 0.2, seed)
    assert not set(groups[train]) & set(groups[val])
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(200))
    assert len(val) >= 40 and len(train) > 0  # at least the asked share, rounded half up
    again = data.split_groups(groups, 0.2, seed)
    np.testing.assert_array_equal(train, again[0])


def test_grouped_split_needs_two_groups():
    with pytest.raises(ValueError, match="at least 2 groups"):
        data.split_groups([3, 3, 3], 0.2, 0)
    train, val = data.split_groups([0, 0, 0, 1], 0.9, 0)  # one group always left for training
    assert len(train) and len(val)


@pytest.mark.parametrize("seed", range(6))
def test_grouped_split_keeps_two_training_tiles(seed):
    # A large group that would leave one training tile is passed over for a small one.
    train, val = data.split_groups([0] * 19 + [1], 0.2, seed)
    np.testing.assert_array_equal(train, np.arange(19))
    np.testing.assert_array_equal(val, [19])


def test_grouped_split_refuses_fewer_than_two_training_tiles(tmp_path):
    with pytest.raises(ValueError, match="leave at least 2 tiles for training"):
        data.split_groups([0, 1], 0.5, 0)
    path = save_npz(tmp_path, "two.npz", X=tile_images(n=2), y=tile_masks(n=2), groups=np.array([0, 1]))
    with data_error(path, "cannot split.*2 tiles for training"):
        data.load_split(path)


@pytest.mark.parametrize("seed, head, total", [(0, [8, 14, 15, 16], 221050), (1, [4, 5, 6, 7], 176840)])
def test_grouped_split_of_the_embedded_set_is_pinned(seed, head, total):
    # The published study results were measured on these validation tiles.
    groups = data.load_tile_ints(data.DEFAULT_TRAIN, "groups", 1439)
    train, val = data.split_groups(groups, 0.2, seed)
    assert (len(train), len(val)) == (1151, 288)
    assert val[:4].tolist() == head and int(val.sum()) == total


# --- load_split of a dots file ----------------------------------------------------


def test_split_renumbers_points_to_its_own_tiles(tmp_path):
    arrays = disc_set(30, seed=1)
    split, _ = load_split(dots_file(tmp_path), seed=3)
    train_idx, val_idx = split_groups(np.arange(30) // 3, 0.2, 3)
    assert split.annotation == "dots" and split.train_masks is None and split.val_masks is None
    for idx, images, points in (
        (train_idx, split.train_images, split.train_points),
        (val_idx, split.val_images, split.val_points),
    ):
        np.testing.assert_array_equal(images, arrays["X"][idx])
        # Every point of these tiles, in order, its tile now a position in this part.
        original = arrays["points"][np.isin(arrays["points"][:, 0], idx)]
        np.testing.assert_array_equal(points[:, 1:], original[:, 1:])
        np.testing.assert_array_equal(idx[points[:, 0].astype(int)], original[:, 0])
    np.testing.assert_array_equal(split.val_counts, arrays["counts"][val_idx])
    assert len(split.train_points) + len(split.val_points) == len(arrays["points"])
