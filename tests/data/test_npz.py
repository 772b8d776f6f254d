"""data.npz: archives checked before they are read; what is not a readable .npz is refused in one line."""

import pickle

import numpy as np
import pytest
from helpers import data_error, header_bomb, save_npz, tile_images, tile_masks

import data
from data import load_test, load_train


def test_oversized_array_refused_before_reading(tmp_path, monkeypatch):
    path = save_npz(tmp_path, "bomb.npz", X=tile_images(), y=tile_masks())
    monkeypatch.setattr(data.npz, "MAX_MEMBER_BYTES", tile_masks().nbytes - 1)

    def no_read(*args, **kwargs):
        raise AssertionError("the archive was read")

    monkeypatch.setattr(data.npz.np, "load", no_read)
    with data_error(path, "'y' would take .* over the"):
        load_train(path)


@pytest.mark.parametrize("load", [load_train, load_test])
def test_array_declared_too_large_in_its_header_refused_before_reading(tmp_path, monkeypatch, load):
    path = header_bomb(tmp_path / "bomb.npz")  # a few hundred bytes, 16 TiB once loaded
    assert path.stat().st_size < 1000

    def no_read(*args, **kwargs):
        raise AssertionError("the archive was read")

    monkeypatch.setattr(data.npz.np, "load", no_read)
    with data_error(path, r"'X' would take 16384.0 GiB as its header declares \(\(17179869184, 32, 32\), uint8\)"):
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
    with data_error(path, f"'X' has an unreadable .npy header.*{problem}"):
        load_test(path)


def test_text_file_is_not_npz(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("index,count\n0,1\n")
    with data_error(path, "not a valid .npz"):
        load_train(path)


def test_empty_file_is_not_npz(tmp_path):
    path = tmp_path / "zero.npz"
    path.write_bytes(b"")
    with data_error(path, "not a valid .npz"):
        load_test(path)


def test_pickle_file_is_not_npz(tmp_path):
    path = tmp_path / "obj.npz"
    path.write_bytes(pickle.dumps({"X": tile_images()}))
    with data_error(path, "not a valid .npz"):
        load_test(path)


def test_npy_file_is_not_npz(tmp_path):
    path = tmp_path / "single.npy"
    np.save(path, tile_images())
    with data_error(path, "not an .npz"):
        load_test(path)


@pytest.mark.parametrize("keep", [0.95, 0.6, 0.3, 0.05])
def test_truncated_npz(tmp_path, keep):
    # Big, incompressible arrays so cuts land inside the member data too.
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (4, 64, 64), dtype=np.uint8)
    path = save_npz(tmp_path, "cut.npz", X=X, y=rng.random(X.shape))
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with data_error(path, "(corrupt|truncated)"):
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
    with data_error(path, "(corrupt|truncated)"):
        load_train(path)


def test_pickled_arrays_refused(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, X=np.array([{"a": 1}], dtype=object), y=tile_masks())
    with data_error(path, "pickled"):
        load_train(path)
