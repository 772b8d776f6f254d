"""Tests of what the commands share: the checks of the paths they write."""

import os

import pytest

from search.cli import check_output_dir, check_output_file
from search.errors import UsageError


@pytest.fixture
def taken(tmp_path):
    """A folder holding a file ``file`` and a folder ``folder``."""
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "folder").mkdir()
    return tmp_path


def test_writable_outputs_pass_and_create_nothing(taken):
    for path in ("new.csv", "file", "folder/new.csv", "new/deeper/out.csv"):
        assert check_output_file(taken / path, "--out") == taken / path
    for path in ("folder", "new", "new/deeper"):
        assert check_output_dir(taken / path, "--out") == taken / path
    assert sorted(p.name for p in taken.iterdir()) == ["file", "folder"]
    assert (taken / "file").read_text() == "keep me"


@pytest.mark.parametrize(
    "check, path, problem",
    [
        (check_output_file, "folder", "folder: is a folder; give a file name"),
        (check_output_file, "file/out.csv", "file/out.csv: .*file is a file, not a folder"),
        (check_output_file, "file/new/out.csv", "file/new/out.csv: .*file is a file, not a folder"),
        (check_output_dir, "file", "file: exists and is not a folder"),
        (check_output_dir, "file/report", "file/report: .*file is a file, not a folder"),
    ],
)
def test_unwritable_outputs_are_refused_in_one_line_naming_the_option(taken, check, path, problem):
    with pytest.raises(UsageError, match=f"^--out .*{problem}$") as info:
        check(taken / path, "--out")
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("check", [check_output_file, check_output_dir])
def test_output_in_a_read_only_folder_is_refused(tmp_path, monkeypatch, check):
    # As if tmp_path were read-only: a chmod would not stop tests run as root.
    monkeypatch.setattr(os, "access", lambda path, mode: path != tmp_path)
    with pytest.raises(UsageError, match=f"^--out {tmp_path}/new/out: no permission to write in {tmp_path}$"):
        check(tmp_path / "new" / "out", "--out")
