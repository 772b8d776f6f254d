"""A training file with soft masks and cell centres: the study searches the target among both."""

import json

import numpy as np
import optuna
import pytest
from helpers import STAGE, disc_set, load, load_runs, run_study

from search import export, space, study
from search.stages import finalists, prepare

STATES = optuna.trial.TrialState


@pytest.fixture
def tiny_both(tmp_path):
    """A training file with masks ``y`` and centres ``points`` of the same tiny tiles, and counts."""
    arrays = disc_set(30, seed=1)
    path = tmp_path / "both.npz"
    np.savez_compressed(path, **{k: arrays[k] for k in ("X", "y", "counts", "points")})
    return path


@pytest.mark.slow  # a whole study with its finalist stage, then an export
def test_masks_and_centres_reach_the_finalist_stage_and_the_export(tiny_both, tiny_files, tiny_profile, in_tmp, capsys):
    assert run_study(tiny_both, "--n-trials", "3", *STAGE) == 0
    s = load()
    assert s.user_attrs[prepare.ANNOTATION_ATTR] == "masks+dots"
    reference, warm = s.trials[:2]
    assert reference.params == space.reference_config(tiny_profile, annotation="masks+dots")
    assert (reference.params["target"], warm.params["target"]) == ("mask", "disks")
    out = capsys.readouterr().out
    assert "trains from masks ('y') and cell centres ('points'): target searched among the soft masks" in out
    assert "then 2 finalists (one more if none trains from the centres) x 2 folds" in out
    plan = finalists.stage_plan(finalists.open_finalists(s))
    assert any(space.trains_from_centres(f["params"]) for f in plan["finalists"])
    assert any(not space.trains_from_centres(f["params"]) for f in plan["finalists"])  # the reference
    runs = load_runs()
    assert len(runs) == 2 * len(plan["finalists"]) and all(r.state == STATES.COMPLETE for r in runs)
    _, test, truth = tiny_files
    assert export.main(["--test", str(test), "--truth", str(truth), "--out", "both.csv"]) == 0
    log = json.loads((in_tmp / "both.json").read_text())
    configs = [json.loads((in_tmp / m["checkpoint"] / "config.json").read_text()) for m in log["members"]]
    assert {c["params"]["target"] for c in configs} <= {"mask", "disks", "density"} and log["test_mae"] >= 0


def test_a_study_created_from_masks_alone_goes_on_so_on_a_file_with_centres(
    tiny_both, tiny_profile, in_tmp, monkeypatch, capsys
):
    # As the harness created it before centres could train: the same file, studied as masks alone.
    real = study.study_split

    def masks_only(*args):
        split, source, rule = real(*args)
        split.train_points = split.val_points = None
        return split, source, rule

    monkeypatch.setattr(study, "study_split", masks_only)
    assert run_study(tiny_both, "--n-trials", "1", "--finalists", "0") == 0
    monkeypatch.setattr(study, "study_split", real)
    assert run_study(tiny_both, "--n-trials", "2", "--finalists", "0") == 0
    s = load()
    assert s.user_attrs[prepare.ANNOTATION_ATTR] == "masks"
    assert all(space.TARGET not in t.params for t in s.trials) and s.trials[1].state == STATES.COMPLETE
    assert "was created to train from masks alone and goes on so" in capsys.readouterr().out
