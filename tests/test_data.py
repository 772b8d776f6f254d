"""Tests for the data package: loading, validation, fingerprint, split."""

import pickle
import re

import numpy as np
import pytest
from helpers import header_bomb

import data
from data import DataError, fingerprint, load_counts_csv, load_test, load_tile_ints, load_train, split_indices

N, H, W = 3, 16, 16


def _images(n=N, h=H, w=W, dtype=np.uint8):
    return (np.arange(n * h * w).reshape(n, h, w) % 256).astype(dtype)


def _masks(n=N, h=H, w=W):
    return np.linspace(0, 1, n * h * w, dtype=np.float32).reshape(n, h, w)


def _npz(tmp_path, name, **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _raises(path, keyword):
    """pytest.raises for a DataError naming `path` and mentioning `keyword`."""
    return pytest.raises(DataError, match=rf"{re.escape(path.name)}.*{keyword}")


# --- load_train: good input -------------------------------------------------


def test_load_train_valid(tmp_path):
    path = _npz(tmp_path, "ok.npz", X=_images(), y=_masks(), extra=np.ones(2))
    X, y = load_train(path)
    assert X.dtype == np.uint8 and X.shape == (N, H, W)
    assert y.dtype == np.float32 and y.shape == (N, H, W)
    np.testing.assert_array_equal(X, _images())


def test_load_train_accepts_str_path(tmp_path):
    path = _npz(tmp_path, "ok.npz", X=_images(), y=_masks())
    X, _ = load_train(str(path))
    assert X.shape == (N, H, W)


def test_load_train_converts_integer_images_and_masks(tmp_path):
    path = _npz(tmp_path, "ints.npz", X=_images(dtype=np.int64), y=(_masks() > 0.5).astype(np.uint8))
    X, y = load_train(path)
    assert X.dtype == np.uint8 and y.dtype == np.float32
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_load_train_drops_trailing_channel(tmp_path):
    path = _npz(tmp_path, "chan.npz", X=_images()[..., None], y=_masks()[..., None])
    X, y = load_train(path)
    assert X.shape == y.shape == (N, H, W)


# --- load_train: bad input --------------------------------------------------

BAD_TRAIN = {
    "missing_y": (dict(X=_images()), "missing key.*'y'"),
    "missing_X": (dict(y=_masks()), "missing key.*'X'"),
    "rank2": (dict(X=_images()[0], y=_masks()[0]), "3-D"),
    "rank4": (dict(X=_images()[..., None].repeat(3, -1), y=_masks()), "3-D"),
    "empty_n": (dict(X=_images(n=0), y=_masks(n=0)), "empty"),
    "empty_w": (dict(X=np.zeros((N, H, 0), np.uint8), y=np.zeros((N, H, 0), np.float32)), "empty"),
    "len_mismatch": (dict(X=_images(n=3), y=_masks(n=2)), "do not match"),
    "shape_mismatch": (dict(X=_images(w=32), y=_masks(w=16)), "do not match"),
    "not_square": (dict(X=_images(w=32), y=_masks(w=32)), "must be square"),
    "float_X": (dict(X=_images().astype(np.float32), y=_masks()), "float images"),
    "X_out_of_range": (dict(X=_images(dtype=np.int16) + 300, y=_masks()), "0..255"),
    "X_negative": (dict(X=_images(dtype=np.int16) - 1, y=_masks()), "0..255"),
    "nan_y": (dict(X=_images(), y=np.where(_masks() > 0.5, np.nan, _masks())), "NaN"),
    "inf_y": (dict(X=_images(), y=np.where(_masks() > 0.5, np.inf, _masks())), "NaN or inf"),
    "y_above_1": (dict(X=_images(), y=_masks() * 2), r"\[0, 1\]"),
    "y_negative": (dict(X=_images(), y=_masks() - 0.5), r"\[0, 1\]"),
    "y_strings": (dict(X=_images(), y=np.full((N, H, W), "a")), "numeric"),
    "size_not_16": (dict(X=_images(h=20), y=_masks(h=20)), "multiples of 16"),
    "width_not_16": (dict(X=_images(w=40), y=_masks(w=40)), "multiples of 16"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN))
def test_load_train_rejects(tmp_path, case):
    arrays, keyword = BAD_TRAIN[case]
    path = _npz(tmp_path, f"{case}.npz", **arrays)
    with _raises(path, keyword):
        load_train(path)


def test_oversized_array_refused_before_reading(tmp_path, monkeypatch):
    path = _npz(tmp_path, "bomb.npz", X=_images(), y=_masks())
    monkeypatch.setattr(data.npz, "MAX_MEMBER_BYTES", _masks().nbytes - 1)

    def no_read(*args, **kwargs):
        raise AssertionError("the archive was read")

    monkeypatch.setattr(data.npz.np, "load", no_read)
    with _raises(path, "'y' would take .* over the"):
        load_train(path)


@pytest.mark.parametrize("load", [load_train, load_test])
def test_array_declared_too_large_in_its_header_refused_before_reading(tmp_path, monkeypatch, load):
    path = header_bomb(tmp_path / "bomb.npz")  # a few hundred bytes, 16 TiB once loaded
    assert path.stat().st_size < 1000

    def no_read(*args, **kwargs):
        raise AssertionError("the archive was read")

    monkeypatch.setattr(data.npz.np, "load", no_read)
    with _raises(path, r"'X' would take 16384.0 GiB as its header declares \(\(17179869184, 32, 32\), uint8\)"):
        load(path)


@pytest.mark.parametrize(
    "header, problem",
    [
        (b"not an npy array", "magic string is not correct"),
        (b"\x93NUMPY\x03\x00\x10\x00\x00\x00{}", "unsupported .npy format version 3.0"),
        (b"\x93NUMPY\x01\x00\x40\x00{'descr': '|u1'", "EOF"),
    ],
)
def test_unreadable_array_header_refused_before_reading(tmp_path, monkeypatch, header, problem):
    path = header_bomb(tmp_path / "bad.npz", header=header)
    monkeypatch.setattr(data.npz.np, "load", lambda *a, **k: pytest.fail("the archive was read"))
    with _raises(path, f"'X' has an unreadable .npy header.*{problem}"):
        load_test(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.npz"
    with _raises(path, "not found"):
        load_train(path)
    with _raises(path, "not found"):
        load_test(path)
    with _raises(path, "not found"):
        load_counts_csv(path)
    with _raises(path, "not found"):
        fingerprint(path)


def test_directory_is_not_a_file(tmp_path):
    path = tmp_path / "adir.npz"
    path.mkdir()
    with _raises(path, "not a regular file"):
        load_train(path)


def test_text_file_is_not_npz(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("index,count\n0,1\n")
    with _raises(path, "not a valid .npz"):
        load_train(path)


def test_empty_file_is_not_npz(tmp_path):
    path = tmp_path / "zero.npz"
    path.write_bytes(b"")
    with _raises(path, "not a valid .npz"):
        load_test(path)


def test_pickle_file_is_not_npz(tmp_path):
    path = tmp_path / "obj.npz"
    path.write_bytes(pickle.dumps({"X": _images()}))
    with _raises(path, "not a valid .npz"):
        load_test(path)


def test_npy_file_is_not_npz(tmp_path):
    path = tmp_path / "single.npy"
    np.save(path, _images())
    with _raises(path, "not an .npz"):
        load_test(path)


@pytest.mark.parametrize("keep", [0.95, 0.6, 0.3, 0.05])
def test_truncated_npz(tmp_path, keep):
    # Big, incompressible arrays so cuts land inside the member data too.
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (4, 64, 64), dtype=np.uint8)
    path = _npz(tmp_path, "cut.npz", X=X, y=rng.random(X.shape))
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with _raises(path, "(corrupt|truncated)"):
        load_train(path)


def test_corrupt_member_data(tmp_path):
    # Intact zip directory but damaged compressed bytes: NpzFile opens it
    # and only fails when the array is read lazily.
    rng = np.random.default_rng(1)
    path = tmp_path / "bitrot.npz"
    np.savez_compressed(path, X=rng.integers(0, 256, (4, 64, 64), np.uint8), y=rng.random((4, 64, 64)))
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 4
    raw[mid : mid + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    with _raises(path, "(corrupt|truncated)"):
        load_train(path)


def test_pickled_arrays_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, X=np.array([{"a": 1}], dtype=object), y=_masks())
    with _raises(path, "pickled"):
        load_train(path)


def test_error_is_one_line_and_a_value_error(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("line one\nline two\n")
    with pytest.raises(ValueError) as info:
        load_train(path)
    err = info.value
    assert isinstance(err, DataError)
    assert "\n" not in str(err)
    assert str(err).startswith(str(path))
    # Survives pickling, as when raised inside a worker process.
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


# --- load_test --------------------------------------------------------------


def test_load_test_valid_and_ignores_y(tmp_path):
    path = _npz(tmp_path, "test.npz", X=_images())
    X = load_test(path)
    assert X.dtype == np.uint8 and X.shape == (N, H, W)


@pytest.mark.parametrize(
    "arrays, keyword",
    [
        (dict(y=_masks()), "missing key.*'X'"),
        (dict(X=_images()[0]), "3-D"),
        (dict(X=_images(n=0)), "empty"),
        (dict(X=_images().astype(np.float64)), "float images"),
        (dict(X=_images(dtype=np.int32) + 256), "0..255"),
        (dict(X=_images(h=24)), "multiples of 16"),
    ],
)
def test_load_test_rejects(tmp_path, arrays, keyword):
    path = _npz(tmp_path, "bad_test.npz", **arrays)
    with _raises(path, keyword):
        load_test(path)


# --- load_counts_csv ----------------------------------------------------------


def _csv(tmp_path, text, name="counts.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_counts_valid(tmp_path):
    path = _csv(tmp_path, "index,count\n0,3\n1,0\n2,17\n")
    counts = load_counts_csv(path, n=3)
    np.testing.assert_array_equal(counts, [3, 0, 17])
    assert counts.dtype == np.int64


def test_counts_whole_floats_accepted(tmp_path):
    path = _csv(tmp_path, "index,count\n0,3.0\n1,4.0\n")
    np.testing.assert_array_equal(load_counts_csv(path), [3, 4])


@pytest.mark.parametrize(
    "text, keyword",
    [
        ("", "empty"),
        ("index,count\n", "no rows"),
        ("index,n\n0,1\n", "missing column.*'count'"),
        ("id,count\n0,1\n", "missing column.*'index'"),
        ("index,count\n0,1.5\n1,2\n", "integers"),
        ("index,count\n0,abc\n1,2\n", "non-integer"),
        ("index,count\n0,\n1,2\n", "missing"),
        ("index,count\n0,1\n1,-2\n", "non-negative"),
        ("index,count\n1,1\n2,2\n", "0..1 in order"),
        ("index,count\n1,1\n0,2\n", "in order"),
        ("index,count\n0,1\n0,2\n", "in order"),
    ],
)
def test_counts_rejects(tmp_path, text, keyword):
    path = _csv(tmp_path, text, name="bad_counts.csv")
    with _raises(path, keyword):
        load_counts_csv(path)


def test_counts_wrong_length(tmp_path):
    path = _csv(tmp_path, "index,count\n0,1\n1,2\n")
    with _raises(path, "expected 3 rows"):
        load_counts_csv(path, n=3)


# --- fingerprint --------------------------------------------------------------


def test_fingerprint_tracks_content(tmp_path):
    path = _npz(tmp_path, "fp.npz", X=_images())
    first = fingerprint(path)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert fingerprint(path) == first
    # Small chunks must give the same digest as one read.
    assert fingerprint(path, chunk_size=7) == first
    np.savez(path, X=_images() + 1)
    assert fingerprint(path) != first


def test_fingerprint_same_bytes_same_digest(tmp_path):
    a = _csv(tmp_path, "index,count\n0,1\n", name="a.csv")
    b = _csv(tmp_path, "index,count\n0,1\n", name="b.csv")
    assert fingerprint(a) == fingerprint(b)


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


# --- embedded dataset ---------------------------------------------------------


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
    path = _npz(tmp_path, "two.npz", X=_images(n=2), y=_masks(n=2), groups=np.array([0, 1]))
    with _raises(path, "cannot split.*2 tiles for training"):
        data.load_split(path)


@pytest.mark.parametrize("seed, head, total", [(0, [8, 14, 15, 16], 221050), (1, [4, 5, 6, 7], 176840)])
def test_grouped_split_of_the_embedded_set_is_pinned(seed, head, total):
    # The published study results were measured on these validation tiles.
    groups = data.load_tile_ints(data.DEFAULT_TRAIN, "groups", 1439)
    train, val = data.split_groups(groups, 0.2, seed)
    assert (len(train), len(val)) == (1151, 288)
    assert val[:4].tolist() == head and int(val.sum()) == total


# --- find_overlap_groups ----------------------------------------------------------


def _cut(image, size, step):
    """Overlapping size x size windows of ``image``, ``step`` px apart in both directions."""
    h, w = image.shape
    return [
        image[r : r + size, c : c + size] for r in range(0, h - size + 1, step) for c in range(0, w - size + 1, step)
    ]


def test_overlap_groups_finds_tiles_of_one_image():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(44, 44), dtype=np.uint8) for _ in range(3)]
    tiles = [t for image in images for t in _cut(image, 32, 12)]  # 3 x 4 tiles, overlap 20 px
    order = rng.permutation(len(tiles))
    groups = data.find_overlap_groups(np.stack(tiles)[order])
    truth = np.repeat(np.arange(3), 4)[order]
    assert len(np.unique(groups)) == 3
    for g in range(3):  # each found group is exactly one image's tiles
        assert len(np.unique(truth[groups == g])) == 1


def test_overlap_groups_none_in_unrelated_tiles():
    rng = np.random.default_rng(1)
    tiles = rng.integers(0, 256, size=(20, 32, 32), dtype=np.uint8)
    tiles[:5] = 0  # flat dark tiles share lines, but lines without texture never link
    tiles[5:8, :, 0] = 7
    np.testing.assert_array_equal(data.find_overlap_groups(tiles), np.arange(20))
    # A non-overlapping cut of one image shares no pixels, so it cannot be linked either.
    image = rng.integers(0, 256, size=(64, 64), dtype=np.uint8)
    assert len(np.unique(data.find_overlap_groups(np.stack(_cut(image, 32, 32))))) == 4
