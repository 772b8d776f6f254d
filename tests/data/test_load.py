"""data.load: training files of masks or dots, test files, per-tile integers, the embedded data set."""

import numpy as np
import pytest
from helpers import (
    H,
    N,
    W,
    data_error,
    disc_labels,
    disc_set,
    dots_file,
    one_line_error,
    save_npz,
    tile_images,
    tile_masks,
)

import data
from data import DataError, load_counts_csv, load_split, load_test, load_tile_ints, load_train, load_train_or_dots

T = 32  # the tiny tiles' side


# --- load_train: good input -------------------------------------------------


def test_load_train_valid(tmp_path):
    path = save_npz(tmp_path, "ok.npz", X=tile_images(), y=tile_masks(), extra=np.ones(2))
    X, y = load_train(path)
    assert X.dtype == np.uint8 and X.shape == (N, H, W)
    assert y.dtype == np.float32 and y.shape == (N, H, W)
    np.testing.assert_array_equal(X, tile_images())


def test_load_train_accepts_str_path(tmp_path):
    path = save_npz(tmp_path, "ok.npz", X=tile_images(), y=tile_masks())
    X, _ = load_train(str(path))
    assert X.shape == (N, H, W)


def test_load_train_converts_integer_images_and_masks(tmp_path):
    path = save_npz(tmp_path, "ints.npz", X=tile_images(dtype=np.int64), y=(tile_masks() > 0.5).astype(np.uint8))
    X, y = load_train(path)
    assert X.dtype == np.uint8 and y.dtype == np.float32
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_load_train_drops_trailing_channel(tmp_path):
    path = save_npz(tmp_path, "chan.npz", X=tile_images()[..., None], y=tile_masks()[..., None])
    X, y = load_train(path)
    assert X.shape == y.shape == (N, H, W)


# --- load_train: bad input --------------------------------------------------


BAD_TRAIN = {
    "missing_y": (dict(X=tile_images()), "missing key.*'y'"),
    "missing_X": (dict(y=tile_masks()), "missing key.*'X'"),
    "rank2": (dict(X=tile_images()[0], y=tile_masks()[0]), "3-D"),
    "rank4": (dict(X=tile_images()[..., None].repeat(3, -1), y=tile_masks()), "3-D"),
    "empty_n": (dict(X=tile_images(n=0), y=tile_masks(n=0)), "empty"),
    "empty_w": (dict(X=np.zeros((N, H, 0), np.uint8), y=np.zeros((N, H, 0), np.float32)), "empty"),
    "len_mismatch": (dict(X=tile_images(n=3), y=tile_masks(n=2)), "do not match"),
    "shape_mismatch": (dict(X=tile_images(w=32), y=tile_masks(w=16)), "do not match"),
    "not_square": (dict(X=tile_images(w=32), y=tile_masks(w=32)), "must be square"),
    "float_X": (dict(X=tile_images().astype(np.float32), y=tile_masks()), "float images"),
    "X_out_of_range": (dict(X=tile_images(dtype=np.int16) + 300, y=tile_masks()), "0..255"),
    "X_negative": (dict(X=tile_images(dtype=np.int16) - 1, y=tile_masks()), "0..255"),
    "nan_y": (dict(X=tile_images(), y=np.where(tile_masks() > 0.5, np.nan, tile_masks())), "NaN"),
    "inf_y": (dict(X=tile_images(), y=np.where(tile_masks() > 0.5, np.inf, tile_masks())), "NaN or inf"),
    "y_above_1": (dict(X=tile_images(), y=tile_masks() * 2), r"\[0, 1\]"),
    "y_negative": (dict(X=tile_images(), y=tile_masks() - 0.5), r"\[0, 1\]"),
    "y_strings": (dict(X=tile_images(), y=np.full((N, H, W), "a")), "numeric"),
    "size_not_16": (dict(X=tile_images(h=20), y=tile_masks(h=20)), "multiples of 16"),
    "width_not_16": (dict(X=tile_images(w=40), y=tile_masks(w=40)), "multiples of 16"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN))
def test_load_train_rejects(tmp_path, case):
    arrays, keyword = BAD_TRAIN[case]
    path = save_npz(tmp_path, f"{case}.npz", **arrays)
    with data_error(path, keyword):
        load_train(path)


# --- load_test --------------------------------------------------------------


def test_load_test_valid_and_ignores_y(tmp_path):
    path = save_npz(tmp_path, "test.npz", X=tile_images())
    X = load_test(path)
    assert X.dtype == np.uint8 and X.shape == (N, H, W)


@pytest.mark.parametrize(
    "arrays, keyword",
    [
        (dict(y=tile_masks()), "missing key.*'X'"),
        (dict(X=tile_images()[0]), "3-D"),
        (dict(X=tile_images(n=0)), "empty"),
        (dict(X=tile_images().astype(np.float64)), "float images"),
        (dict(X=tile_images(dtype=np.int32) + 256), "0..255"),
        (dict(X=tile_images(h=24)), "multiples of 16"),
    ],
)
def test_load_test_rejects(tmp_path, arrays, keyword):
    path = save_npz(tmp_path, "bad_test.npz", **arrays)
    with data_error(path, keyword):
        load_test(path)


# --- per-tile integers and the embedded data set ----------------------------


def test_embedded_paths_are_absolute_and_present():
    assert data.EMBEDDED_DIR.is_absolute()
    for path in (data.DEFAULT_TRAIN, data.DEFAULT_TEST, data.DEFAULT_TEST_COUNTS, data.DEFAULT_TEST_TRUTH):
        assert path.is_file(), path
    assert (data.EMBEDDED_DIR / "README.md").is_file()
    assert (data.EMBEDDED_DIR / "LICENSE").is_file()


def test_embedded_dataset_loads():
    X, y = load_train(data.DEFAULT_TRAIN)
    assert X.shape == y.shape == (1439, 128, 128)
    assert load_test(data.DEFAULT_TEST).shape == (135, 128, 128)
    counts = load_counts_csv(data.DEFAULT_TEST_COUNTS, n=135)
    assert counts.shape == (135,)


def test_load_tile_counts_optional_and_checked(tmp_path):
    X = np.zeros((3, 16, 16), np.uint8)
    y = np.zeros((3, 16, 16), np.float32)
    plain = tmp_path / "plain.npz"
    np.savez(plain, X=X, y=y)
    assert load_tile_ints(plain, "counts", 3) is None
    good = tmp_path / "good.npz"
    np.savez(good, X=X, y=y, counts=np.array([0, 2, 5], np.int32))
    np.testing.assert_array_equal(load_tile_ints(good, "counts", 3), [0, 2, 5])
    for name, counts in [
        ("short", np.array([1, 2])),
        ("negative", np.array([1, -1, 0])),
        ("float", np.array([1.5, 2.0, 0.0])),
    ]:
        bad = tmp_path / f"{name}.npz"
        np.savez(bad, X=X, y=y, counts=counts)
        with pytest.raises(DataError, match=f"{name}.npz.*counts"):
            load_tile_ints(bad, "counts", 3)


def test_embedded_training_set_has_its_source_images():
    X, _ = load_train(data.DEFAULT_TRAIN)
    groups = data.load_tile_ints(data.DEFAULT_TRAIN, "groups", len(X))
    assert groups.shape == (len(X),) and len(np.unique(groups)) > 100


def test_load_tile_groups_optional_and_checked(tmp_path):
    X, y = np.zeros((3, 16, 16), np.uint8), np.zeros((3, 16, 16), np.float32)
    plain, good, bad = tmp_path / "plain.npz", tmp_path / "good.npz", tmp_path / "bad.npz"
    np.savez(plain, X=X, y=y)
    np.savez(good, X=X, y=y, groups=np.array([4, 4, 9], np.int32))
    np.savez(bad, X=X, y=y, groups=np.array([0, 1]))
    assert data.load_tile_ints(plain, "groups", 3) is None
    np.testing.assert_array_equal(data.load_tile_ints(good, "groups", 3), [4, 4, 9])
    with pytest.raises(DataError, match="bad.npz.*groups"):
        data.load_tile_ints(bad, "groups", 3)


# --- dots files -------------------------------------------------------------


def test_dots_file_loads_without_masks(tmp_path):
    arrays = disc_set(30, seed=1)
    X, y, points = load_train_or_dots(dots_file(tmp_path))
    assert y is None and X.shape == (30, T, T) and X.dtype == np.uint8
    assert points.dtype == np.float64 and points.shape == (arrays["counts"].sum(), 3)
    np.testing.assert_array_equal(points, arrays["points"])
    # Integer coordinates are dots files too.
    ints = dots_file(tmp_path, "ints.npz", points=arrays["points"].astype(np.int64))
    np.testing.assert_array_equal(load_train_or_dots(ints)[2], arrays["points"])


def test_mask_file_gives_its_cell_centres_from_points_else_from_labels(tmp_path):
    arrays = disc_set(30, seed=1)
    both = tmp_path / "both.npz"
    np.savez(both, X=arrays["X"], y=arrays["y"], points=arrays["points"])
    X, y, points = load_train_or_dots(both)
    np.testing.assert_array_equal(y, arrays["y"])
    np.testing.assert_array_equal(points, arrays["points"])
    # Labels alone: one centre per instance of each tile, at its centroid (about the disc's centre).
    tiles = arrays["points"][:, 0].astype(int)
    labels = np.stack([disc_labels((T, T), arrays["points"][tiles == i, 1:].astype(int), 3) for i in range(30)])
    from_labels = tmp_path / "labels.npz"
    np.savez(from_labels, X=arrays["X"], y=arrays["y"], labels=labels)
    np.testing.assert_allclose(load_train_or_dots(from_labels)[2], arrays["points"], atol=1)  # overlaps shift some
    assert load_split(both)[0].annotation == load_split(from_labels)[0].annotation == "masks+dots"
    masks_only = tmp_path / "masks.npz"
    np.savez(masks_only, X=arrays["X"], y=arrays["y"])
    assert load_train_or_dots(masks_only)[2] is None and load_split(masks_only)[0].annotation == "masks"


def test_mask_file_refuses_bad_centres(tmp_path):
    arrays = disc_set(30, seed=1)
    path = tmp_path / "masks.npz"
    np.savez(path, X=arrays["X"], y=arrays["y"], points=np.full((2, 3), np.nan))
    with one_line_error(path, "'points' contains NaN"):
        load_train_or_dots(path)
    np.savez(path, X=arrays["X"], y=arrays["y"], labels=np.zeros((2, T, T), np.int32))
    with one_line_error(path, "'labels' must be non-negative integers of shape (30, 32, 32)"):
        load_train_or_dots(path)


def test_file_without_masks_or_dots_names_both_keys(tmp_path):
    path = dots_file(tmp_path, points=None)
    with one_line_error(path, "no 'y' (soft masks) and no 'points' (dots)", "found: 'X', 'counts', 'groups'"):
        load_split(path)
