"""search.stages.finalists: out-of-fold runs beside the search, their plan, queue, resume and results."""

import json

import numpy as np
import optuna
import pytest
from helpers import STAGE, Clock, load, load_runs, run_study, use_clock
from optuna_dashboard import get_note

import data
from search import export, report, roles
from search.results.verdict import finalist_text, stage_verdict
from search.stages import finalists, objective

STATES = optuna.trial.TrialState


def snapshot(s):
    return [(t.number, t.state, t.params, t.value) for t in s.trials], s.best_trial.number


@pytest.mark.slow  # four whole studies
def test_finalist_runs_never_reach_the_search_best_trial_or_sampler(tiny_files, tiny_profile, in_tmp, monkeypatch):
    train, _, _ = tiny_files
    seen = {}
    for folder, stage in (("plain", ()), ("staged", STAGE)):
        (in_tmp / folder).mkdir()
        monkeypatch.chdir(in_tmp / folder)
        assert run_study(train, "--n-trials", "3", *stage) == 0
        searched = snapshot(load())
        # Searching on: the sampler sees the same trials, so it draws the same next configuration.
        assert run_study(train, "--n-trials", "4") == 0
        seen[folder] = searched, load().trials[3].params
    # The runs live in a study of their own; the search's trials and best trial are as without them.
    assert sorted(roles.run_key(t) for t in load_runs()) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(t.state == STATES.COMPLETE for t in load_runs())
    assert seen["staged"] == seen["plain"]


@pytest.mark.slow
def test_stage_runs_each_finalist_once_per_fold_and_records_them(tiny_files, tiny_profile, in_tmp, capsys):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    runs, search = load_runs(), load()
    # Fold by fold: a stage cut short still compares every finalist on the same images.
    assert [roles.run_key(t)[1] for t in runs] == [0, 0, 1, 1]
    for t in runs:
        assert t.params == search.trials[t.user_attrs["finalist_of"]].params
        config = json.loads((in_tmp / t.user_attrs["checkpoint"] / "config.json").read_text())
        assert config["train"]["seed"] == t.user_attrs["train_seed"] == 1 + t.user_attrs["fold"]
        assert config["study"] == "cells:finalists"
        assert t.user_attrs["checkpoint"].startswith(f"studies/{search.user_attrs['folder']}/finalists/")
    out = capsys.readouterr().out
    assert "finalists: trial" in out and "(trial 1 fold 1) finished" in out
    assert "| finalist | role | search val | fold 0 | fold 1 | out-of-fold |" in out and "Verdict out of fold:" in out
    # The note and the static report show the same table and verdict.
    note = get_note(search)
    assert "### Finalists" in note and "| trial 0 |" in note and "Verdict out of fold:" in note
    # The summary and the note give the weights the export uses, and the nested estimate, not the in-sample one.
    for text in (out, note):
        assert "Weights out of fold (greedy ensemble selection" in text and "Nested cross-fitting" in text
    assert report.main([]) == 0
    page = (in_tmp / "reports" / "cells" / "report.html").read_text()
    assert "<h2>Finalists</h2>" in page and "Verdict out of fold:" in page


@pytest.mark.slow
def test_every_training_image_is_predicted_once_per_finalist_never_a_validation_one(tiny_files, tiny_profile, in_tmp):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    split, _ = data.load_split(train, 0, 0.2)
    validated_on = set(load().user_attrs["val_groups"])
    staged = finalists.results(load())
    assert len(staged) == 2
    for f in staged:
        errors, groups, folds = f.out_of_fold([0, 1])
        # Each training-side tile exactly once, from the run that held its fold out.
        assert sorted(groups.tolist()) == sorted(split.train_groups.tolist())
        assert not validated_on & set(groups.tolist())
        for k in (0, 1):
            assert not set(groups[folds == k]) & set(groups[folds != k])  # an image lies in one fold
    verdict = stage_verdict(staged)
    assert verdict.n_images == len(np.unique(split.train_groups)) and verdict.folds == [0, 1]


@pytest.mark.slow
def test_stage_stopped_by_ctrl_c_resumes_without_repeating_runs(tiny_files, tiny_profile, in_tmp, monkeypatch):
    real_fit = objective.fit
    seeds = []

    def fit_interrupting_second_run(net, train, *args, **kwargs):
        seeds.append(train.seed)
        if len(seeds) == 4:  # 2 search trials, then the finalist runs: the second of them
            raise KeyboardInterrupt
        return real_fit(net, train, *args, **kwargs)

    monkeypatch.setattr(objective, "fit", fit_interrupting_second_run)
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 130
    assert [t.state for t in load_runs()] == [STATES.COMPLETE, STATES.FAIL, STATES.WAITING, STATES.WAITING]
    seeds.clear()
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    # The interrupted run first, then the others in plan order; the finished run is not trained again.
    assert seeds == [1, 2, 2]
    complete = [roles.run_key(t) for t in load_runs() if t.state == STATES.COMPLETE]
    assert sorted(complete) == [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.slow
def test_stage_stopped_by_the_timeout_keeps_the_run_queued(tiny_files, tiny_profile, in_tmp, monkeypatch, capsys):
    clock, real_fit = Clock(), objective.fit
    use_clock(monkeypatch, clock)
    calls = []

    def fit(*args, on_epoch, **kwargs):
        calls.append(1)

        def report_epoch(r):
            if len(calls) == 3:  # the first finalist run reaches the deadline in its first epoch
                clock.skew = 1e6
            on_epoch(r)

        return real_fit(*args, on_epoch=report_epoch, **kwargs)

    monkeypatch.setattr(objective, "fit", fit)
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    stopped, *queued = load_runs()
    assert stopped.state == STATES.FAIL and "timeout" in stopped.user_attrs["fail_reason"]
    # One line says why; Optuna's traceback and its "failed with value None" would only repeat it.
    assert "Traceback" not in capsys.readouterr().err
    requeued = [t for t in queued if t.user_attrs.get("requeued_from") == stopped.number]
    assert [roles.run_key(t) for t in requeued] == [roles.run_key(stopped)]
    clock.skew = 0.0
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    assert sum(t.state == STATES.COMPLETE for t in load_runs()) == 4


def test_run_guard_fails_duplicates_and_runs_of_an_old_plan_without_training(in_tmp):
    s = optuna.create_study()
    s.set_user_attr(finalists.PLAN_ATTR, {"folds": 1, "seeds": [1], "finalists": [{"trial": 0, "params": {}}]})
    trained = []
    guarded = finalists.FinalistRun(lambda fold: lambda trial: trained.append(roles.run_key(trial)) or 1.0)
    for key in ((0, 0), (0, 0), (5, 0)):
        s.enqueue_trial({}, user_attrs={roles.SOURCE_ATTR: key[0], roles.FOLD_ATTR: key[1]})
    s.optimize(guarded, n_trials=4, catch=(finalists.NotRun,))
    assert trained == [(0, 0)]
    reasons = [t.user_attrs.get("fail_reason", "") for t in s.trials]
    assert "trial 0 already holds" in reasons[1] and "no longer a finalist" in reasons[2]
    assert "no finalist run was waiting" in reasons[3]


def test_queue_keeps_plan_order_and_drops_unplanned_runs_in_one_pass(in_tmp):
    s = optuna.create_study()
    plan = {"folds": 2, "seeds": [1, 2], "finalists": [{"trial": 0, "params": {}}, {"trial": 3, "params": {}}]}
    # Left by cut-short runs: a run queued again behind later ones, and many runs of an old plan.
    for key in [(3, 1), (0, 1), (3, 0)] + [(9, k % 2) for k in range(50)]:
        s.enqueue_trial({}, user_attrs={roles.SOURCE_ATTR: key[0], roles.FOLD_ATTR: key[1]})
    claims = []
    finalists.queue_plan(s, plan, lambda trial: claims.append(trial.number) or True)
    waiting = [roles.run_key(t) for t in s.get_trials(states=(STATES.WAITING,))]
    assert waiting == [(0, 0), (3, 0), (0, 1), (3, 1)] == finalists.planned_runs(plan)
    assert len(claims) == 53 and all(t.state == STATES.FAIL for t in s.trials[:53])
    assert s.trials[-1].user_attrs["train_seed"] == 2
    finalists.queue_plan(s, plan, lambda trial: pytest.fail("an ordered queue is left alone"))


@pytest.mark.slow
def test_a_finalist_study_of_a_deleted_study_is_not_inherited(tiny_files, tiny_profile, in_tmp, capsys):
    train, test, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    old_runs = len(load_runs())
    optuna.delete_study(study_name="cells", storage="sqlite:///studies/cells.db")
    capsys.readouterr()
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    out = capsys.readouterr().out
    assert "deleted the finalist study 'cells:finalists' of an earlier study" in out
    assert "0 of 4 runs done" in out and len(load_runs()) == old_runs
    assert export.main(["--test", str(test)]) == 0


@pytest.mark.slow
def test_a_resumed_study_trains_its_queued_finalist_runs_before_any_search_trial(
    tiny_files, tiny_profile, in_tmp, monkeypatch, capsys
):
    clock, real_fit, seeds, fits = Clock(), objective.fit, [], []
    use_clock(monkeypatch, clock)

    def fit(net, train, *args, on_epoch, **kwargs):
        seeds.append(train.seed)
        fits.append(1)

        def report_epoch(r):
            if len(fits) == 3:  # the first finalist run reaches the deadline in its first epoch
                clock.skew = 1e6
            on_epoch(r)

        return real_fit(net, train, *args, on_epoch=report_epoch, **kwargs)

    monkeypatch.setattr(objective, "fit", fit)
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    clock.skew, seeds[:] = 0.0, []
    assert run_study(train, "--n-trials", "4", *STAGE) == 0
    # All four runs, fold by fold, before the two new search trials (seed 0).
    assert seeds[:6] == [1, 1, 2, 2, 0, 0]
    assert "resuming the finalist stage first" in capsys.readouterr().out


@pytest.mark.slow
def test_runs_of_a_configuration_the_plan_dropped_are_kept_and_reported(tiny_files, tiny_profile, in_tmp):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    staged = optuna.load_study(study_name="cells:finalists", storage="sqlite:///studies/cells.db")
    plan = staged.user_attrs[finalists.PLAN_ATTR]
    dropped = plan["finalists"].pop(0)  # as if the search's best had changed to a trial not yet run
    staged.set_user_attr(finalists.PLAN_ATTR, plan)
    results = finalists.results(load())
    earlier = [f for f in results if f.role == "earlier finalist"]
    assert [f.trial for f in earlier] == [dropped["trial"]] and sorted(earlier[0].runs) == [0, 1]
    intro, _, _ = finalist_text(results)
    assert f"Runs of trial {dropped['trial']} finished under an earlier plan" in intro
    assert stage_verdict(results).winner.trial in {f.trial for f in results}
