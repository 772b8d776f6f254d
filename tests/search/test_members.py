"""search.members: which models a submission holds, before and after the finalist stage has compared them."""

import optuna
import pytest

from search import members, roles
from search.stages import finalists

LR = optuna.distributions.FloatDistribution(1e-4, 1.0)


def search_study() -> optuna.Study:
    """An in-memory search study: the reference (trial 0, MAE 1) and a better best trial (1, MAE 0.5)."""
    s = optuna.create_study(study_name="cells")
    s.set_user_attr(roles.FOLDER_ATTR, "cells-00000000")
    for value, lr, attrs in ((1.0, 0.1, {roles.BASELINE_ATTR: True}), (0.5, 0.2, {})):
        s.add_trial(
            optuna.trial.create_trial(value=value, params={"lr": lr}, distributions={"lr": LR}, user_attrs=attrs)
        )
    return s


def staged_study(search: optuna.Study, n_folds: int) -> optuna.Study:
    """The finalist study of ``search``, planned as the stage plans it: its best and its reference over ``n_folds``."""
    staged = finalists.open_finalists(search, create=True)
    staged.set_user_attr(finalists.PLAN_ATTR, finalists.make_plan(search, 2, n_folds, 0))
    return staged


def add_run(staged: optuna.Study, source: int, fold: int, n_folds: int | None, error: int) -> None:
    """A complete run of trial ``source`` on ``fold`` of ``n_folds`` (None: from before partitions were recorded)."""
    attrs = {roles.SOURCE_ATTR: source, roles.FOLD_ATTR: fold, roles.SEED_ATTR: 1 + fold}
    attrs |= {} if n_folds is None else {roles.FOLDS_ATTR: n_folds}
    groups = [3 * fold + i for i in range(3)]  # the fold's held-out images, the same for every finalist
    attrs |= {"val_errors": [error] * 3, "val_groups": groups, "val_counts": {"true": [5, 6, 7]}}
    staged.add_trial(optuna.trial.create_trial(value=float(abs(error)), user_attrs=attrs))


def test_a_stage_cut_short_before_the_references_first_run_exports_the_best_trial_alone(capsys):
    search = search_study()
    add_run(staged_study(search, 2), 1, 0, 2, 0)  # killed after the best trial's first fold run
    choice = members.choose(search, None, None)
    assert choice.what == "trial 1 alone" and [m.trial.number for m in choice.members] == [1]
    out = capsys.readouterr().out
    assert out.startswith("no finalist comparison yet") and "finish the stage" in out


def test_a_study_without_a_finalist_stage_never_asks_to_finish_one(capsys):
    # --finalists 0: no finalist study at all.
    assert members.choose(search_study(), None, None).what == "trial 1 alone"
    out = capsys.readouterr().out
    assert out == "no finalist stage has run: exporting trial 1 alone\n" and "finish" not in out


def test_runs_of_another_number_of_folds_never_reach_the_export():
    search = search_study()
    staged = staged_study(search, 2)
    # A 3-fold stage ran first (folds 0 and 1 are folds of another partition), and a run that predates partitions.
    for source in (0, 1):
        for fold in range(3):
            add_run(staged, source, fold, 3, source)
    add_run(staged, 1, 1, None, 0)
    assert [f.runs for f in finalists.results(search)] == [{}, {}]
    assert members.choose(search, None, None).what == "trial 1 alone"
    with pytest.raises(members.UsageError, match="no finalist with a finished run"):
        members.choose(search, None, 1)
    for source in (0, 1):
        for fold in range(2):
            add_run(staged, source, fold, 2, 1 - source)  # the best trial is better on this partition
    choice = members.choose(search, None, None)
    runs = [roles.run_key(m.trial) for m in choice.members if roles.run_key(m.trial) is not None]
    assert (1, 0, 2) in runs and (1, 1, 2) in runs and all(k[2] == 2 for k in runs)
