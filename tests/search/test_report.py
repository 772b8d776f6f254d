"""Tests of `python -m search.report` on studies of fake trials (no training) and one real tiny study."""

import re
from pathlib import Path

import numpy as np
import optuna
import pytest

from search import report, space

FIGURES = (
    "optimization_history.png",
    "param_importances.png",
    "parallel_coordinate.png",
    "mae_by_depth_upsample_offset.png",
    "mae_by_offset.png",
    "best_counts.png",
)


def fake_objective(trial, with_counts=True, se=0.1):
    """Samples the real search space and records what a real trial records, without training."""
    space.suggest(trial, space.PROFILES["quick"])
    rng = np.random.default_rng(trial.number)
    true = rng.integers(0, 20, 30)
    pred = true + rng.integers(-2, 3, 30)
    for o in range(space.OFFSETS[0], space.OFFSETS[1] + 1):
        trial.set_user_attr(f"val_mae_offset_{o:+d}", float(abs(o - 1) + rng.random()))
    trial.set_user_attr("counting_name", "watershed +0")
    trial.set_user_attr("offset", 0)
    trial.set_user_attr("train_seconds", 1.5)
    trial.set_user_attr("value_se", se)
    trial.set_user_attr("val_errors", (pred - true).tolist())
    if with_counts:
        trial.set_user_attr("val_counts", {"true": true.tolist(), "pred": pred.tolist()})
    return float(np.abs(pred - true).mean())


def fake_study(n_trials, name="cells", with_counts=True, se=0.1):
    Path("studies").mkdir(exist_ok=True)
    s = optuna.create_study(
        study_name=name, storage=f"sqlite:///studies/{name}.db", sampler=optuna.samplers.RandomSampler(seed=0)
    )
    s.set_user_attr("train_path", "train.npz")
    s.set_user_attr("val_groups", list(range(30)))
    s.enqueue_trial(space.reference_config(space.PROFILES["quick"]), user_attrs={"baseline": True})
    s.optimize(lambda trial: fake_objective(trial, with_counts, se), n_trials=n_trials)
    return s


def img_files(page):
    return re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="[^"]*" data-file="([^"]+)"', page)


def test_report_has_every_figure_and_the_top_trials(in_tmp, capsys):
    fake_study(6)
    assert report.main([]) == 0
    out = in_tmp / "reports" / "cells"
    for name in FIGURES:
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
    page = (out / "report.html").read_text()
    assert img_files(page) == list(FIGURES)
    assert "Top 6 trials" in page and page.count("<tr>") >= 6 + 6  # summary rows + table rows
    assert "reference" in page and 'src="http' not in page  # self-contained
    assert "significant gain" in page or "is the best trial" in page
    assert "wrote reports/cells/report.html" in capsys.readouterr().out


def test_one_trial_skips_importances_with_a_note(in_tmp, capsys):
    fake_study(1)
    out = in_tmp / "one"
    assert report.main(["--storage", "sqlite:///studies/cells.db", "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "param_importances.png" not in img_files(page)
    assert not (out / "param_importances.png").exists()
    assert "Not drawn: needs at least 2 complete trials" in page
    assert len(img_files(page)) == len(FIGURES) - 1
    assert "param_importances.png skipped" in capsys.readouterr().out


def test_old_trials_without_counts_still_report(in_tmp):
    fake_study(2, with_counts=False)  # as if recorded before trials kept per-tile counts
    assert report.main([]) == 0
    page = (in_tmp / "reports" / "cells" / "report.html").read_text()
    assert "best_counts.png" not in img_files(page) and "per-tile validation counts" in page


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (lambda: None, [], "no study database studies/cells.db"),
        (lambda: fake_study(1, name="other"), ["--storage", "sqlite:///studies/other.db"], "no study 'cells'"),
        (
            lambda: optuna.create_study(study_name="cells", storage="sqlite:///studies/cells.db"),
            [],
            "has no finished trial yet",
        ),
    ],
)
def test_nothing_to_report_exits_2_with_one_line(in_tmp, capsys, setup, args, message):
    (in_tmp / "studies").mkdir()
    setup()
    assert report.main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (in_tmp / "reports").exists()


@pytest.mark.parametrize("out, problem", [("taken", "exists and is not a folder"), ("taken/sub", "taken is a file")])
def test_out_that_cannot_be_a_folder_exits_2_with_one_line(in_tmp, capsys, out, problem):
    fake_study(2)
    (in_tmp / "taken").write_text("keep me")
    assert report.main(["--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--out {out}: " in err and problem in err
    assert (in_tmp / "taken").read_text() == "keep me"


def test_importances_optuna_cannot_tell_apart_are_left_out_with_its_reason(in_tmp, capfd):
    Path("studies").mkdir()
    s = optuna.create_study(study_name="cells", storage="sqlite:///studies/cells.db")
    s.set_user_attr("val_groups", list(range(30)))
    # Tied values: the evaluator's top trials are all the trials, so every importance is equal.
    s.optimize(lambda trial: fake_objective(trial) * 0 + 1.0, n_trials=3)
    capfd.readouterr()
    assert report.main([]) == 0
    captured = capfd.readouterr()
    assert captured.err == ""  # no stray warning
    page = (in_tmp / "reports" / "cells" / "report.html").read_text()
    assert "param_importances.png" not in img_files(page)
    assert "Not drawn: Optuna could not draw it: Target and region quantiles select the same set" in page


def test_a_study_without_standard_errors_reports_no_interval(in_tmp):
    fake_study(3, se=None)  # fewer than 5 validation images give no standard error
    assert report.main([]) == 0
    page = (in_tmp / "reports" / "cells" / "report.html").read_text()
    best = re.search(r"<th>best trial</th><td>([^<]*)</td>", page).group(1)
    assert "(no interval) with watershed +0" in best and page.count("<td>no interval</td>") == 3


def test_out_in_the_study_folder_is_refused(in_tmp, capsys):
    fake_study(2).set_user_attr("folder", "cells-0000")
    assert report.main(["--out", "studies/cells-0000/artifacts"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is in the study's folder" in err
    assert not (in_tmp / "studies" / "cells-0000").exists()
