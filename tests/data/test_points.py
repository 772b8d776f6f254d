"""data.points: a dots file's points checked in one line, agreeing with its counts, and selected by tile."""

import numpy as np
import pytest
from helpers import disc_set, dots_file, one_line_error

from data import load_split, select_points

BAD_POINTS = {
    "two columns": (np.zeros((2, 2), np.float32), "(M, 3) array"),
    "one dimension": (np.zeros(3, np.float32), "(M, 3) array"),
    "text": (np.array([["0", "1", "1"]]), "(M, 3) array of reals"),
    "booleans": (np.ones((1, 3), bool), "(M, 3) array of reals"),
    "NaN": (np.array([[0, np.nan, 3]], np.float32), "NaN or inf"),
    "infinite": (np.array([[0, 3, np.inf]]), "NaN or inf"),
    "fractional tile": (np.array([[1.5, 3, 3]], np.float32), "row 0 names tile 1.5"),
    "negative tile": (np.array([[-1, 3, 3]], np.float32), "row 0 names tile -1"),
    "tile past the last": (np.array([[0, 3, 3], [30, 3, 3]], np.float32), "row 1 names tile 30; tiles are whole"),
    "row at the far edge": (np.array([[0, 32, 3]], np.float32), "row 0 at (32, 3) lies outside its 32x32 tile"),
    "negative column": (np.array([[0, 3, -0.5]], np.float32), "row 0 at (3, -0.5) lies outside"),
    # Every true count 0: the study would train on blank targets and report val MAE 0.000.
    "no point": (np.zeros((0, 3), np.float32), "is empty: a dots file needs at least one dot"),
}


@pytest.mark.parametrize("case", BAD_POINTS)
def test_bad_points_one_line(tmp_path, case):
    points, message = BAD_POINTS[case]
    path = dots_file(tmp_path, points=points, counts=None)
    with one_line_error(path, "'points'", message) as err:
        load_split(path)
    assert "\n" not in str(err.value)


def test_counts_that_disagree_with_the_points_are_refused(tmp_path):
    counts = disc_set(30, seed=1)["counts"].copy()
    counts[[4, 7]] += 1
    path = dots_file(tmp_path, counts=counts)
    with one_line_error(path, "'counts' disagree with 'points' on 2 tiles (tile 4: count"):
        load_split(path)


def test_select_points_renumbers_and_keeps_order():
    points = np.array([[0, 1, 2], [3, 4, 5], [2, 6, 7], [3, 8, 9]], float)
    np.testing.assert_array_equal(select_points(points, np.array([2, 3])), [[1, 4, 5], [0, 6, 7], [1, 8, 9]])
    assert select_points(points, np.array([1])).shape == (0, 3)
