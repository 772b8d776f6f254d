"""data.errors: a missing or odd path is named in one line, as a DataError that is a ValueError."""

import pickle

import pytest
from helpers import data_error

from data import DataError, fingerprint, load_counts_csv, load_test, load_train


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.npz"
    with data_error(path, "not found"):
        load_train(path)
    with data_error(path, "not found"):
        load_test(path)
    with data_error(path, "not found"):
        load_counts_csv(path)
    with data_error(path, "not found"):
        fingerprint(path)


def test_directory_is_not_a_file(tmp_path):
    path = tmp_path / "adir.npz"
    path.mkdir()
    with data_error(path, "not a regular file"):
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
