"""Tests of what the commands share: the checks of the paths they write."""

import os
from pathlib import Path

import cv2
import numpy as np
import optuna
import pytest

import search.export
import search.predict
import search.report
from search.cli import check_output_dir, check_output_file, check_spares_study
from search.errors import UsageError
from search.roles import FOLDER_ATTR
from search.runtime.storage import open_storage


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


@pytest.fixture
def journal_study(in_tmp):
    """A study in studies/cells.journal.log whose folder is studies/cells-0000: the URL and the study."""
    url = "journal:///studies/cells.journal.log"
    s = optuna.create_study(study_name="cells", storage=open_storage(url))
    s.set_user_attr(FOLDER_ATTR, "cells-0000")
    return url, s


@pytest.mark.parametrize(
    "out, problem",
    [
        ("studies/cells.journal.log", "is the study's storage"),
        ("studies/../studies/cells.journal.log.flock", "is the study's storage"),  # compared resolved
        ("studies/cells-0000/artifacts/x.csv", "is in the study's folder"),
        ("studies/cells-0000", "is in the study's folder"),
    ],
)
def test_outputs_over_the_study_storage_or_in_its_folder_are_refused(journal_study, out, problem):
    url, s = journal_study
    with pytest.raises(UsageError, match=f"^--out {out}: {problem}.*nothing written") as info:
        check_spares_study({"--out": Path(out), "--log": None}, url, s)
    assert len(str(info.value).splitlines()) == 1


def test_outputs_beside_the_study_pass(journal_study):
    url, s = journal_study
    check_spares_study({"--out": Path("studies/cells.csv"), "--overlays": Path("studies/overlays")}, url, s)


def one_image_folder(folder):
    """A folder holding one small image, for ``search.predict``."""
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((40, 40), np.uint8))
    return str(folder)


@pytest.mark.parametrize("command", ["export", "predict", "report"])
@pytest.mark.parametrize("storage", [None, "sqlite:///studies/cell.db", "studies/cell.journal.log"])
def test_reading_commands_never_create_storage(in_tmp, capsys, command, storage):
    images = one_image_folder(in_tmp / "images")
    args = {"export": [], "predict": [images], "report": []}[command]
    args += [] if storage is None else ["--storage", storage]
    before = sorted(in_tmp.rglob("*"))
    assert getattr(search, command).main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("no study database" if storage is None else "no file studies/cell") in err
    assert sorted(in_tmp.rglob("*")) == before  # no database, no journal, no studies/ folder
