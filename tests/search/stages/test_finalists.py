"""search.stages.finalists: out-of-fold runs beside the search, their plan, queue, resume and results."""

import json
import socket
import subprocess
import sys

import numpy as np
import optuna
import pytest
from helpers import STAGE, Clock, load, load_runs, run_study, use_clock
from optuna_dashboard import get_note

import data
from search import export, report, roles
from search.results.verdict import finalist_text, stage_verdict
from search.runtime.storage import WORKER_ATTR
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
    assert sorted(roles.run_key(t) for t in load_runs()) == [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2)]
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


def interrupt_second_run(monkeypatch) -> list[int]:
    """Make Ctrl-C stop the second finalist run (the 4th training: 2 search trials come first).

    Returns the training seeds, appended as each training starts (the test may clear them).
    """
    real_fit, seeds, fits = objective.fit, [], []

    def fit(net, train, *args, **kwargs):
        seeds.append(train.seed)
        fits.append(1)
        if len(fits) == 4:
            raise KeyboardInterrupt
        return real_fit(net, train, *args, **kwargs)

    monkeypatch.setattr(objective, "fit", fit)
    return seeds


@pytest.mark.slow
def test_stage_stopped_by_ctrl_c_resumes_without_repeating_runs(tiny_files, tiny_profile, in_tmp, monkeypatch):
    seeds = interrupt_second_run(monkeypatch)
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 130
    # The interrupted run is queued again at once (last), to continue from its saved state.
    runs = load_runs()
    assert [t.state for t in runs] == [STATES.COMPLETE, STATES.FAIL] + [STATES.WAITING] * 3
    assert roles.run_key(runs[-1]) == roles.run_key(runs[1]) and runs[-1].user_attrs["requeued_from"] == 1
    seeds.clear()
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    # The interrupted run first, then the others in plan order; the finished run is not trained again.
    assert seeds == [1, 2, 2]
    complete = [roles.run_key(t) for t in load_runs() if t.state == STATES.COMPLETE]
    assert sorted(complete) == [(0, 0, 2), (0, 1, 2), (1, 0, 2), (1, 1, 2)]


@pytest.mark.slow
def test_a_run_killed_mid_stage_keeps_the_fold_by_fold_order(tiny_files, tiny_profile, in_tmp, monkeypatch):
    """kill -9 leaves a run RUNNING: it is reaped, with a reason, before the plan orders the queue."""
    seeds = interrupt_second_run(monkeypatch)
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 130
    # Make the queued copy of the stopped run look like a run whose process was killed mid-epoch.
    staged = optuna.load_study(study_name="cells:finalists", storage="sqlite:///studies/cells.db")
    killed = staged.get_trials(deepcopy=False)[-1]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    staged._storage.set_trial_state_values(killed._trial_id, STATES.RUNNING)
    staged._storage.set_trial_user_attr(killed._trial_id, WORKER_ATTR, f"{socket.gethostname()}:{dead.pid}")
    seeds.clear()
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    assert seeds == [1, 2, 2]  # the killed run's fold first, then fold 1's runs
    reaped = next(t for t in load_runs() if t.number == killed.number)
    assert reaped.state == STATES.FAIL and "worker process" in reaped.user_attrs["fail_reason"]


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
    assert run_study(train, "--n-trials", "2", "--timeout", "600", *STAGE) == 0
    stopped, *queued = load_runs()
    assert stopped.state == STATES.FAIL and "timeout" in stopped.user_attrs["fail_reason"]
    # One line says why; Optuna's traceback and its "failed with value None" would only repeat it.
    assert "Traceback" not in capsys.readouterr().err
    requeued = [t for t in queued if t.user_attrs.get("requeued_from") == stopped.number]
    assert [roles.run_key(t) for t in requeued] == [roles.run_key(stopped)]
    clock.skew = 0.0
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    assert sum(t.state == STATES.COMPLETE for t in load_runs()) == 4


def enqueue_run(s, source, fold, n_folds):
    """Queue the finalist run of ``source`` holding out ``fold`` of ``n_folds`` (None: a run that predates it)."""
    attrs = {roles.SOURCE_ATTR: source, roles.FOLD_ATTR: fold}
    s.enqueue_trial({}, user_attrs=attrs if n_folds is None else {**attrs, roles.FOLDS_ATTR: n_folds})


def test_run_guard_fails_duplicates_and_runs_of_an_old_plan_without_training(in_tmp):
    s = optuna.create_study()
    s.set_user_attr(finalists.PLAN_ATTR, {"folds": 2, "seeds": [1, 2], "finalists": [{"trial": 0, "params": {}}]})
    trained = []
    guarded = finalists.FinalistRun(lambda fold: lambda trial: trained.append(roles.run_key(trial)) or 1.0)
    # A duplicate, a configuration no longer planned, the same fold of a 3-fold partition, a run without one.
    for key in ((0, 0, 2), (0, 0, 2), (5, 0, 2), (0, 0, 3), (0, 0, None)):
        enqueue_run(s, *key)
    s.optimize(guarded, n_trials=6, catch=(finalists.NotRun,))
    assert trained == [(0, 0, 2)]
    reasons = [t.user_attrs.get("fail_reason", "") for t in s.trials]
    assert "trial 0 already holds" in reasons[1] and all("no longer in the finalist plan" in r for r in reasons[2:5])
    assert "no finalist run was waiting" in reasons[5]


def test_queue_keeps_plan_order_and_drops_unplanned_runs_in_one_pass(in_tmp):
    s = optuna.create_study()
    plan = {"folds": 2, "seeds": [1, 2], "finalists": [{"trial": 0, "params": {}}, {"trial": 3, "params": {}}]}
    # Left by cut-short runs: a run queued again behind later ones, many runs of an old plan, runs of
    # a 3-fold partition and one that predates recording partitions.
    old = [(9, k % 2, 2) for k in range(50)] + [(0, 0, 3), (3, 1, 3), (0, 0, None)]
    for key in [(3, 1, 2), (0, 1, 2), (3, 0, 2)] + old:
        enqueue_run(s, *key)
    claims = []
    finalists.queue_plan(s, plan, lambda trial: claims.append(trial.number) or True)
    waiting = [roles.run_key(t) for t in s.get_trials(states=(STATES.WAITING,))]
    assert waiting == [(0, 0, 2), (3, 0, 2), (0, 1, 2), (3, 1, 2)] == finalists.planned_runs(plan)
    assert len(claims) == 56 and all(t.state == STATES.FAIL for t in s.trials[:56])
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
    assert run_study(train, "--n-trials", "2", "--timeout", "600", *STAGE) == 0
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


@pytest.mark.slow  # two studies with their stages
@pytest.mark.parametrize("first, then", [(2, 3), (3, 2)])
def test_a_new_number_of_folds_is_a_new_plan_never_mixed_with_the_old(
    tiny_files, tiny_profile, in_tmp, capsys, first, then
):
    train, test, _ = tiny_files
    assert run_study(train, "--n-trials", "2", "--finalists", "2", "--folds", str(first)) == 0
    capsys.readouterr()
    assert run_study(train, "--n-trials", "2", "--finalists", "2", "--folds", str(then)) == 0
    # Every training-side image scored once per finalist, by a run of the new partition alone.
    split, _ = data.load_split(train, 0, 0.2)
    staged = finalists.results(load())
    verdict = stage_verdict(staged)
    assert verdict.folds == list(range(then)) and verdict.n_images == len(np.unique(split.train_groups))
    for f in staged:
        assert sorted(f.out_of_fold(list(range(then)))[1].tolist()) == sorted(split.train_groups.tolist())
        assert all(r.user_attrs["n_folds"] == then for r in f.runs.values())
    assert f"{then} of {then} folds" in get_note(load())
    # The old plan's runs are kept, and the new plan says so.
    assert sorted(roles.run_key(t)[2] for t in load_runs()) == sorted([first] * 2 * first + [then] * 2 * then)
    out = capsys.readouterr().out
    assert f"0 of {2 * then} runs done ({2 * first} runs of a {first}-fold partition kept, never compared" in out
    assert export.main(["--test", str(test)]) == 0
    log = json.loads((in_tmp / "submission.json").read_text())
    assert sorted(m["fold"] for m in log["members"][1:]) == list(range(then))


@pytest.mark.slow
def test_a_stage_cut_short_is_not_resumed_under_another_number_of_folds(tiny_files, tiny_profile, in_tmp, monkeypatch):
    seeds = interrupt_second_run(monkeypatch)
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 130
    # Cut before the second finalist's first run: nothing compared yet, and the note says so.
    assert "Verdict out of fold: no fold has a finished run of every finalist yet." in get_note(load())
    seeds.clear()
    assert run_study(train, "--n-trials", "2", "--finalists", "2", "--folds", "3") == 0
    # The 2-fold plan's three runs left are not trained first: only the new plan's six, fold by fold.
    assert seeds == [1, 1, 2, 2, 3, 3]


def searched(targets_values, baseline=0):
    """A study of complete trials, trial ``i`` training ``targets_values[i][0]`` and scoring ``[1]``."""
    study = optuna.create_study()
    dist = optuna.distributions.CategoricalDistribution(("mask", "disks", "density"))
    for i, (target, value) in enumerate(targets_values):
        attrs = {roles.BASELINE_ATTR: True} if i == baseline else {}
        trial = optuna.trial.create_trial(
            params={"target": target, "lr": 1e-3 * (i + 1)},
            distributions={"target": dist, "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1)},
            value=value,
            user_attrs=attrs,
        )
        study.add_trial(trial)
    return study


def picked(study, k=2):
    return [(t.number, role) for t, role in finalists.pick_finalists(study, k)]


def test_the_best_centre_target_trial_is_always_a_finalist_when_masks_are_searched_too():
    # Validation preferred masks: the best disks trial (3) still reaches the stage, as a third finalist.
    study = searched([("mask", 2.5), ("disks", 2.4), ("mask", 2.0), ("disks", 2.3)])
    assert picked(study) == [(2, "best"), (0, "reference"), (3, finalists.CENTRE_ROLE)]
    assert picked(study, 3) == [(2, "best"), (0, "reference"), (3, "runner-up")]
    # It takes a runner-up's place rather than adding a run when there is one to take.
    study = searched([("mask", 2.5), ("disks", 2.4), ("mask", 2.0), ("mask", 2.1)])
    assert picked(study, 3) == [(2, "best"), (0, "reference"), (1, finalists.CENTRE_ROLE)]
    # Already among them: nothing changes.
    study = searched([("mask", 2.5), ("disks", 2.0), ("mask", 2.2)])
    assert picked(study) == [(1, "best"), (0, "reference")]
    study = searched([("mask", 2.0), ("mask", 2.1), ("density", 2.3)])
    assert picked(study) == [(0, "best and reference"), (2, finalists.CENTRE_ROLE)]
    # All from masks, or all from centres (a dots study): the picks are what they were.
    assert picked(searched([("mask", 2.0), ("mask", 2.1), ("mask", 1.9)])) == [(2, "best"), (0, "reference")]
    assert picked(searched([("disks", 2.0), ("density", 2.1)])) == [(0, "best and reference"), (1, "runner-up")]
    assert picked(study, 0) == []
