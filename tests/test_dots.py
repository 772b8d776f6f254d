"""Training from dots: loading and splitting points, disk targets, dots studies and their exports."""

import json
import re

import cv2
import numpy as np
import optuna
import pandas as pd
import pytest
from helpers import disc_set
from optuna_dashboard import get_note

from data import DataError, load_split, load_train_or_dots, select_points, split_groups
from data.importer import main as import_main
from model.count import count_setting
from model.targets import density_targets, disk_targets
from search import export, report, space, study
from search.stages.objective import study_split

T = 32  # the tiny tiles' side


def dots_file(tmp_path, name="dots.npz", n=30, **changes):
    """A dots file of ``n`` disc tiles (X, counts, points, groups of 3 tiles), with arrays changed or removed."""
    arrays = disc_set(n, seed=1)
    arrays = {"X": arrays["X"], "counts": arrays["counts"], "points": arrays["points"], "groups": np.arange(n) // 3}
    arrays.update(changes)
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def one_line_error(path, *words):
    """pytest.raises for a one-line DataError naming ``path`` and saying each of ``words``."""
    return pytest.raises(DataError, match=rf"^{re.escape(str(path))}: .*" + ".*".join(map(re.escape, words)))


# --- loading and splitting points ---------------------------------------------


def test_dots_file_loads_without_masks(tmp_path):
    arrays = disc_set(30, seed=1)
    X, y, points = load_train_or_dots(dots_file(tmp_path))
    assert y is None and X.shape == (30, T, T) and X.dtype == np.uint8
    assert points.dtype == np.float64 and points.shape == (arrays["counts"].sum(), 3)
    np.testing.assert_array_equal(points, arrays["points"])
    # Integer coordinates are dots files too.
    ints = dots_file(tmp_path, "ints.npz", points=arrays["points"].astype(np.int64))
    np.testing.assert_array_equal(load_train_or_dots(ints)[2], arrays["points"])


def test_mask_file_trains_from_its_masks_and_its_points_are_not_read(tmp_path):
    arrays = disc_set(30, seed=1)
    path = tmp_path / "masks.npz"
    np.savez(path, X=arrays["X"], y=arrays["y"], points=np.full((2, 3), np.nan))  # bad points: never read
    X, y, points = load_train_or_dots(path)
    assert points is None
    np.testing.assert_array_equal(y, arrays["y"])


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


def test_file_without_masks_or_dots_names_both_keys(tmp_path):
    path = dots_file(tmp_path, points=None)
    with one_line_error(path, "no 'y' (soft masks) and no 'points' (dots)", "found: 'X', 'counts', 'groups'"):
        load_split(path)


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


def test_select_points_renumbers_and_keeps_order():
    points = np.array([[0, 1, 2], [3, 4, 5], [2, 6, 7], [3, 8, 9]], float)
    np.testing.assert_array_equal(select_points(points, np.array([2, 3])), [[1, 4, 5], [0, 6, 7], [1, 8, 9]])
    assert select_points(points, np.array([1])).shape == (0, 3)


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


# --- studies ---------------------------------------------------------------------

STATES = optuna.trial.TrialState
TILE = ["--tile", str(T), "--allow-empty"]  # the importer's options for folders of one-tile images, some empty


def load(name="cells"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///studies/{name}.db")


def test_true_counts_of_a_dots_file_without_counts_are_its_dots(tmp_path):
    arrays = disc_set(30, seed=1)
    split, source, _ = study_split(dots_file(tmp_path, counts=None), 0, 0.2, "image")
    _, val_idx = split_groups(np.arange(30) // 3, 0.2, 0)
    assert source == "the dots per tile ('points')"
    np.testing.assert_array_equal(split.val_counts, arrays["counts"][val_idx])


def run_study(train, *extra):
    return study.main(["--train", str(train), "--profile", "tiny", "--seed", "0", *extra])


def test_dots_study_samples_and_records_the_radius(tiny_dots, tiny_profile, in_tmp, capsys):
    assert run_study(tiny_dots, "--n-trials", "3") == 0
    s = load()
    assert s.user_attrs["annotation"] == "dots"
    baseline, warm, sampled = s.trials
    assert baseline.params == space.reference_config(tiny_profile, annotation="dots")
    assert warm.params == space.warm_start(tiny_profile, "dots")
    assert baseline.params["target_radius"] == warm.params["target_radius"] == space.DEFAULT_RADIUS
    assert sampled.state == STATES.COMPLETE and 2 <= sampled.params["target_radius"] <= 5
    for t in s.trials:
        config = json.loads((in_tmp / t.user_attrs["checkpoint"] / "config.json").read_text())
        assert config["params"]["target_radius"] == t.params["target_radius"]
    out = capsys.readouterr().out
    assert "true counts: stored counts" in out
    assert "trains from dots ('points', no masks): disks of radius 2-5 px (target_radius, searched" in out
    assert "- trains from dots ('points', no masks)" in get_note(s)


def density_warm_start(monkeypatch, sigma=2.0):
    """Make a new study's warm start (trial 1) train a density map of ``sigma``: trial 0 stays on disks."""
    disks = space.warm_start

    def warm_start(profile, annotation="masks"):
        params = {k: v for k, v in disks(profile, annotation).items() if k != space.RADIUS}
        return {**params, space.TARGET: "density", space.SIGMA: sigma}

    monkeypatch.setattr(space, "warm_start", warm_start)


def test_density_trial_counts_by_its_sum_through_study_and_export(
    tiny_dots, tiny_files, tiny_profile, in_tmp, monkeypatch, capsys
):
    density_warm_start(monkeypatch)
    assert run_study(tiny_dots, "--n-trials", "2") == 0
    baseline, density = load().trials
    assert baseline.params[space.TARGET] == "disks" and space.SIGMA not in baseline.params
    assert density.params[space.TARGET] == "density" and space.RADIUS not in density.params
    # Scored on the density counter's settings only, and a disks trial on the thresholding ones only.
    assert set(density.user_attrs["counting_scores"]) == {f"density {o:+d}" for o in range(-1, 3)}
    assert density.user_attrs["counting"]["counter"] == "density"
    assert density.user_attrs["val_mae_reference_counting"] is None
    assert not any(k.startswith("density") for k in baseline.user_attrs["counting_scores"])
    config = json.loads((in_tmp / density.user_attrs["checkpoint"] / "config.json").read_text())
    assert config["train"]["loss"] == "mse" and config["params"][space.SIGMA] == 2.0
    assert config["train"]["min_epoch_steps"] == tiny_profile.epoch_steps

    _, test, truth = tiny_files
    for extra in ([], ["--refit"]):
        out = in_tmp / f"density{len(extra)}.csv"
        assert export.main(["--trial", "1", "--test", str(test), "--truth", str(truth), *extra, "--out", str(out)]) == 0
        log = json.loads(out.with_suffix(".json").read_text())
        assert log["counting"]["counter"] == "density" and log["test_mae"] >= 0
        assert len(pd.read_csv(out)) == 6
    assert "on all 30 tiles (density maps of Gaussians of sigma 2.00 px at the dots)" in capsys.readouterr().out


def test_resume_with_another_annotation_is_refused(tiny_files, tiny_dots, tiny_profile, in_tmp, capsys):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "1") == 0
    assert load().user_attrs["annotation"] == "masks"
    assert run_study(tiny_dots, "--n-trials", "2") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"study 'cells' trains from masks, but {tiny_dots} has dots and no masks; use another --study-name" in err
    assert len(load().trials) == 2  # the baseline and the queued warm start, nothing more


@pytest.mark.parametrize(
    "points, message",
    [([[0, 3, 40]], "'points' row 0 at (3, 40) lies outside"), (np.zeros((0, 3)), "'points' is empty")],
)
def test_bad_points_exit_2_before_the_study_exists(tmp_path, tiny_profile, in_tmp, capsys, points, message):
    path = dots_file(tmp_path, points=np.asarray(points, np.float32), counts=None)
    assert run_study(path) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"dots.npz: {message}" in err
    assert not (in_tmp / "studies").exists()


# Trials 0-3 of a tiny mask study with seed 0 as the code before dots drew them (the baseline, the
# warm start, then TPE's random start-up): dots must not change what a mask study samples.
KEYS = ("lr", "epochs", "depth", "upsample", "schedule", "augment")
MASK_STUDY_PARAMS = [
    dict(zip(KEYS, values))
    for values in (
        (2e-4, 2, 4, "interp", "constant", False),
        (2e-3, 2, 4, "interp", "cosine", True),
        (0.0007447144904083078, 1, 3, "interp", "cosine", False),
        (0.0017468984743535486, 2, 4, "transpose", "constant", False),
    )
]


def test_mask_study_draws_what_it_drew_before_dots(tiny_files, tiny_profile, in_tmp):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "4") == 0
    assert [t.params for t in load().trials] == MASK_STUDY_PARAMS


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), path


def dots_folder(root, n, seed):
    """``n`` disc images of one tile each in root/images, their dots images (a white pixel per cell) in root/dots."""
    arrays = disc_set(n, seed=seed)
    for i, image in enumerate(arrays["X"]):
        dots = np.zeros((T, T), np.uint8)
        for _, r, c in arrays["points"][arrays["points"][:, 0] == i].astype(int):
            dots[r, c] = 255
        _write(root / "images" / f"{i:03d}.png", image)
        _write(root / "dots" / f"{i:03d}.png", dots)
    return root / "images", root / "dots"


@pytest.mark.slow  # a whole study with its finalist stage, then two exports and a report
def test_dots_folder_to_study_to_submission(tiny_profile, in_tmp, capsys):
    # The README's three commands: import, study, export (the test set imported likewise).
    train_images, train_dots = dots_folder(in_tmp / "train", 30, seed=1)
    test_images, test_dots = dots_folder(in_tmp / "test", 6, seed=2)
    for images, dots, out, extra in (
        (train_images, train_dots, "train.npz", []),
        (test_images, test_dots, "test.npz", ["--counts-csv", "test_counts.csv"]),
    ):
        assert import_main([str(images), "--dots", str(dots), "--out", out, *TILE, *extra]) == 0
    with np.load("train.npz") as z:
        assert "y" not in z.files and len(z["X"]) == 30
    stage = ["--n-trials", "3", "--finalists", "2", "--folds", "2"]
    assert study.main(["--study-name", "mine", "--train", "train.npz", "--profile", "tiny", *stage]) == 0
    s = load("mine")
    assert s.user_attrs["annotation"] == "dots"
    assert all(2 <= t.params["target_radius"] <= 5 for t in s.trials)
    runs = optuna.load_study(study_name="mine:finalists", storage="sqlite:///studies/mine.db").trials
    assert len(runs) == 4 and all(r.state == STATES.COMPLETE and "target_radius" in r.params for r in runs)
    out = capsys.readouterr().out
    assert "trains from dots" in out and "Verdict out of fold:" in out

    truth = ["--test", "test.npz", "--truth", "test_counts.csv"]
    assert export.main(["--study-name", "mine", *truth, "--out", "mine.csv"]) == 0
    log = json.loads((in_tmp / "mine.json").read_text())
    assert "fold models" in log["exported"] and len(log["members"]) == 3 and log["test_mae"] >= 0
    assert len(pd.read_csv("mine.csv")) == 6

    assert export.main(["--study-name", "mine", *truth, "--refit", "--out", "refit.csv"]) == 0
    log = json.loads((in_tmp / "refit.json").read_text())
    assert log["refit"] and all(m["checkpoint"].endswith("refit") for m in log["members"])
    radius = log["params"]["target_radius"]
    assert f"on all 30 tiles (disks of radius {radius} px at the dots)" in capsys.readouterr().out
    for member in log["members"]:
        config = json.loads((in_tmp / member["checkpoint"] / "config.json").read_text())
        assert config["refit"] and config["params"]["target_radius"] == radius
    assert len(pd.read_csv("refit.csv")) == 6
    assert report.main(["--study-name", "mine", "--out", "report"]) == 0  # its plots take target_radius too
    assert (in_tmp / "report" / "report.html").is_file()
