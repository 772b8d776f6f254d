"""The finalist stage: out-of-fold runs beside the search, their resume, budget, verdict and export."""

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from helpers import Clock, use_clock
from optuna_dashboard import get_note

import data
from model.checkpoint import load_checkpoint
from model.count import count_setting
from model.infer import predict_prob
from search import export, report, roles, study
from search.results import stats
from search.results.verdict import Finalist, finalist_rows, finalist_text, stage_verdict, stage_verdict_line
from search.stages import finalists, objective

STATES = optuna.trial.TrialState
STAGE = ("--finalists", "2", "--folds", "2")


def run_study(train, *extra):
    return study.main(["--train", str(train), "--profile", "tiny", "--seed", "0", *extra])


def load(name="cells"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///studies/{name}.db")


def load_runs(name="cells"):
    return optuna.load_study(study_name=f"{name}:finalists", storage=f"sqlite:///studies/{name}.db").trials


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


def test_folds_keep_every_source_image_on_one_side():
    groups = np.repeat(np.arange(40), np.arange(40) % 4 + 1)
    for n_folds in (2, 3, 5):
        folds = data.assign_folds(groups, n_folds, seed=3)
        for g in np.unique(groups):
            assert len(np.unique(folds[groups == g])) == 1
        sizes = np.bincount(folds)
        assert len(sizes) == n_folds and sizes.max() - sizes.min() <= 4  # balanced in tiles
    with pytest.raises(ValueError, match="need 2 to 40 folds"):
        data.assign_folds(groups, 41)


def test_fold_split_trains_on_the_other_folds_and_the_validation_images(tiny_files):
    train, _, _ = tiny_files
    split, _ = data.load_split(train, 0, 0.2)
    folds = data.assign_folds(split.train_groups, 2, 0)
    held = objective.fold_split(split, folds, 1)
    assert len(held.val_images) == np.count_nonzero(folds == 1)
    assert len(held.train_images) == np.count_nonzero(folds == 0) + len(split.val_images)
    np.testing.assert_array_equal(held.val_images, split.train_images[folds == 1])
    np.testing.assert_array_equal(held.train_images[-len(split.val_images) :], split.val_images)
    np.testing.assert_array_equal(held.val_counts, split.train_counts[folds == 1])


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
def test_budget_stops_the_search_in_time_for_the_finalist_runs(tiny_files, tiny_profile, in_tmp, monkeypatch):
    clock, real_fit = Clock(), objective.fit
    use_clock(monkeypatch, clock)

    def slow_fit(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        clock.skew += 100.0  # every training takes 100 s
        return result

    monkeypatch.setattr(objective, "fit", slow_fit)
    train, _, _ = tiny_files
    # 1000 s: each trial takes 100; the 4 finalist runs then need 400, so the search stops at about 600.
    assert run_study(train, "--n-trials", "40", "--timeout", "1000", *STAGE) == 0
    searched = [t for t in load().trials if t.state.is_finished()]
    assert 5 <= len(searched) <= 6
    assert [t.state for t in load_runs()] == [STATES.COMPLETE] * 4
    assert clock.skew <= 1000 + 100


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


def test_ensemble_counts_are_the_rounded_mean_and_no_worse_than_the_members():
    rng = np.random.default_rng(0)
    for _ in range(50):
        truth = rng.integers(0, 30, 40)
        counts = np.maximum(truth + rng.integers(-4, 5, (int(rng.integers(1, 6)), 40)), 0)
        ensemble = stats.ensemble_counts(counts)
        np.testing.assert_array_equal(ensemble, np.floor(counts.mean(0) + 0.5))
        member_mae = np.abs(counts - truth).mean(1)
        assert np.abs(ensemble - truth).mean() <= member_mae.mean() + 0.5
        # On errors (counts minus integer truth) it gives the ensemble's errors.
        np.testing.assert_array_equal(stats.ensemble_counts(counts - truth), ensemble - truth)
    assert stats.ensemble_counts([[1, 2], [2, 3]]).tolist() == [2, 3]  # halves round up


def fold_runs(run_spread, n_images=42, seed=0, n_folds=3):
    """Out-of-fold errors of two configurations: b worse by 1, give or take ``run_spread`` per fold."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_images), 3)
    folds = groups % n_folds
    a = rng.integers(0, 3, len(groups))  # over-counts: a shift adds to the error as it is
    shifts = np.array([run_spread, -run_spread, 0])[:n_folds]  # mean 0 over 2 or 3 folds
    b = a + 1 + shifts[folds]
    return a, b, groups, folds


def test_runs_that_disagree_more_than_their_images_explain_are_not_a_significant_gain():
    steady = stats.compare_folds(*fold_runs(run_spread=0))
    assert steady.is_gain and steady.high < 0 and steady.se_runs == 0
    noisy = stats.compare_folds(*fold_runs(run_spread=2))
    a, b, groups, _ = fold_runs(run_spread=2)
    # Over images alone the difference still looks clear; the runs' disagreement undoes it.
    images_only = stats.compare(a, b, groups)
    assert images_only.significant and images_only.high < 0
    assert not noisy.significant and noisy.low < 0 < noisy.high
    assert noisy.se_runs > noisy.se_images
    assert noisy.se == pytest.approx(np.hypot(noisy.se_runs, noisy.se_images))


class Run:
    """A stand-in for a complete finalist run: its value and its scored tiles."""

    def __init__(self, errors, groups):
        self.value = float(np.abs(errors).mean())
        self.user_attrs = {"val_errors": list(errors), "val_groups": list(groups)}


def staged_pair(a, b, groups, folds):
    def finalist(trial, role, errors):
        runs = {k: Run(errors[folds == k], groups[folds == k]) for k in np.unique(folds).tolist()}
        return Finalist(trial, role, {}, 3, runs)

    return [finalist(3, "best", a), finalist(0, "reference", b)]


@pytest.mark.parametrize(
    "n_folds, n_images, reason",
    [
        (1, 42, "1 training run per finalist (a spread needs 3)"),
        (2, 42, "2 training runs per finalist (a spread needs 3)"),
        (3, 3, "3 out-of-fold images (an interval needs 5)"),
    ],
)
def test_too_few_runs_or_images_give_a_sentence_not_an_interval(n_folds, n_images, reason):
    # Runs that agree exactly: over images alone, 2 folds would look like a clear gain.
    a, b, groups, folds = fold_runs(run_spread=0, n_images=n_images, n_folds=max(n_folds, 2))
    if n_folds == 1:
        a, b, groups, folds = a[folds == 0], b[folds == 0], groups[folds == 0], folds[folds == 0]
    result = stats.compare_folds(a, b, groups, folds)
    assert not result.significant and result.low is None
    assert result.too_few == reason
    line = stage_verdict_line(staged_pair(a, b, groups, folds))
    assert "no interval, too few to estimate one" in line and "95%" not in line
    rows = finalist_rows(staged_pair(a, b, groups, folds))
    assert rows[0]["out-of-fold"] == pytest.approx(np.abs(a).mean())
    assert rows[1]["fold 1"] == (None if n_folds == 1 else pytest.approx(np.abs(b[folds == 1]).mean()))


def test_verdict_picks_the_lowest_out_of_fold_mae_and_states_the_claim():
    a, b, groups, folds = fold_runs(run_spread=0)
    best, base = staged_pair(a, b, groups, folds)
    line = stage_verdict_line([best, base])
    assert line.startswith("trial 3 has the lowest out-of-fold MAE")
    assert "the search beat the reference configuration" in line
    assert line.endswith(": a significant gain")
    best.role, base.role = "reference", "best"  # the baseline is now the better one
    assert stage_verdict([base, best]).winner is best
    assert "keep the reference configuration" in stage_verdict_line([base, best])


@pytest.mark.slow
def test_export_writes_the_winners_search_and_fold_models(tiny_files, tiny_profile, in_tmp, capsys):
    train, test, truth = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    assert export.main(["--test", str(test), "--truth", str(truth)]) == 0
    log = json.loads((in_tmp / "submission.json").read_text())
    search, staged = load(), finalists.results(load())
    winner = min(staged, key=lambda f: f.oof_mae([0, 1]))
    assert log["trial"] == winner.trial and log["score"] == "out-of-fold MAE"
    assert log["mae"] == pytest.approx(winner.oof_mae([0, 1]))
    # The search trial's own model, then one model per fold, each with its own seed and counting.
    assert [m["run"] for m in log["members"]] == [f"trial {winner.trial}"] + [
        roles.trial_label(winner.runs[k]) for k in (0, 1)
    ]
    assert [(m["fold"], m["seed"]) for m in log["members"]] == [(None, 0), (0, 1), (1, 2)]
    images = np.load(test)["X"]
    counts = []
    for member, trial in zip(log["members"], [search.trials[winner.trial], winner.runs[0], winner.runs[1]]):
        assert Path(member["checkpoint"]) == in_tmp / trial.user_attrs["checkpoint"]
        assert member["counting"] == trial.user_attrs["counting"]
        net, _ = load_checkpoint(member["checkpoint"])
        counts.append(count_setting(predict_prob(net, images), member["counting"]))
    submission = pd.read_csv(in_tmp / "submission.csv")["count"].to_numpy()
    np.testing.assert_array_equal(submission, stats.ensemble_counts(np.stack(counts)))
    assert "exported trial" in capsys.readouterr().out

    # The baseline's models on request, refitted and with TTA per member; one trial alone with --trial.
    assert export.main(["--test", str(test), "--finalist", "0", "--refit", "--tta", "--out", "base.csv"]) == 0
    base = json.loads((in_tmp / "base.json").read_text())
    assert base["trial"] == 0 and base["tta"] and len(base["members"]) == 3
    assert all(m["checkpoint"].endswith("refit") for m in base["members"])
    assert export.main(["--test", str(test), "--trial", "1", "--out", "one.csv"]) == 0
    one = json.loads((in_tmp / "one.json").read_text())
    assert [m["run"] for m in one["members"]] == ["trial 1"]
    assert one["counting"] == load().trials[1].user_attrs["counting"]
    capsys.readouterr()
    assert export.main(["--test", str(test), "--finalist", "7"]) == 2
    assert "no finalist with a finished run" in capsys.readouterr().err


@pytest.mark.slow
def test_export_before_any_finalist_run_exports_the_best_trial(tiny_files, tiny_profile, in_tmp, capsys):
    train, test, _ = tiny_files
    assert run_study(train, "--n-trials", "2") == 0  # the tiny profile has no stage
    assert export.main(["--test", str(test)]) == 0
    out = capsys.readouterr().out
    assert "no finalist comparison yet" in out
    assert json.loads((in_tmp / "submission.json").read_text())["trial"] == load().best_trial.number


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
