"""data.files: the index,count CSV of true counts, and the fingerprint of a data file."""

import re

import numpy as np
import pytest
from helpers import data_error, save_npz, tile_images

from data import fingerprint, load_counts_csv

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
    with data_error(path, keyword):
        load_counts_csv(path)


def test_counts_wrong_length(tmp_path):
    path = _csv(tmp_path, "index,count\n0,1\n1,2\n")
    with data_error(path, "expected 3 rows"):
        load_counts_csv(path, n=3)


# --- fingerprint --------------------------------------------------------------


def test_fingerprint_tracks_content(tmp_path):
    path = save_npz(tmp_path, "fp.npz", X=tile_images())
    first = fingerprint(path)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert fingerprint(path) == first
    # Small chunks must give the same digest as one read.
    assert fingerprint(path, chunk_size=7) == first
    np.savez(path, X=tile_images() + 1)
    assert fingerprint(path) != first


def test_fingerprint_same_bytes_same_digest(tmp_path):
    a = _csv(tmp_path, "index,count\n0,1\n", name="a.csv")
    b = _csv(tmp_path, "index,count\n0,1\n", name="b.csv")
    assert fingerprint(a) == fingerprint(b)
