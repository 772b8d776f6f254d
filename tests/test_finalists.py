"""The finalist stage: fresh-seed runs beside the search, their resume, budget, verdict and ensemble export."""

import json

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import Clock, use_clock
from optuna_dashboard import get_note

from model.checkpoint import load_checkpoint
from model.count import count_setting
from model.train import predict_prob
from search import export, finalists, objective, report, stats, study
from search.verdict import finalist_rows, seed_verdict_line

STATES = optuna.trial.TrialState
STAGE = ("--finalists", "2", "--finalist-seeds", "2")


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
    assert sorted(finalists.run_key(t) for t in load_runs()) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all(t.state == STATES.COMPLETE for t in load_runs())
    assert seen["staged"] == seen["plain"]


def test_stage_runs_best_and_baseline_seed_by_seed_and_records_them(tiny_files, tiny_profile, in_tmp, capsys):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    runs = load_runs()
    # Seed by seed: a stage cut short still has every finalist's first seeds.
    assert [finalists.run_key(t) for t in runs] == [(0, 1), (1, 1), (0, 2), (1, 2)]
    for t in runs:
        assert t.params == load().trials[t.user_attrs["finalist_of"]].params
        config = json.loads((in_tmp / t.user_attrs["checkpoint"] / "config.json").read_text())
        assert config["train"]["seed"] == t.user_attrs["train_seed"] and config["study"] == "cells:finalists"
        assert t.user_attrs["checkpoint"].startswith(f"studies/{load().user_attrs['folder']}/finalists/")
    out = capsys.readouterr().out
    assert "finalists: trial" in out and "run 3 (trial 1 seed 2) finished" in out
    assert "| finalist | role | seed 1 | seed 2 | mean | sd | ensemble |" in out and "Verdict over seeds:" in out
    # The note and the static report show the same table and verdict.
    note = get_note(load())
    assert "### Finalists" in note and "| trial 0 |" in note and "Verdict over seeds:" in note
    assert report.main([]) == 0
    page = (in_tmp / "reports" / "cells" / "report.html").read_text()
    assert "<h2>Finalists</h2>" in page and "Verdict over seeds:" in page


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
    assert sorted(seeds) == [1, 2, 2]  # no search trial, and the finished run is not trained again
    complete = [finalists.run_key(t) for t in load_runs() if t.state == STATES.COMPLETE]
    assert sorted(complete) == [(0, 1), (0, 2), (1, 1), (1, 2)]


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
    assert [finalists.run_key(t) for t in requeued] == [finalists.run_key(stopped)]
    clock.skew = 0.0
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    assert sum(t.state == STATES.COMPLETE for t in load_runs()) == 4


def test_run_guard_fails_duplicates_and_runs_of_an_old_plan_without_training(in_tmp):
    s = optuna.create_study()
    s.set_user_attr(finalists.PLAN_ATTR, [{"trial": 0, "role": "best", "params": {}, "seeds": [1]}])
    trained = []
    guarded = finalists.FinalistRun(lambda trial: trained.append(finalists.run_key(trial)) or 1.0)
    for key in ((0, 1), (0, 1), (5, 1)):
        s.enqueue_trial({}, user_attrs={finalists.SOURCE_ATTR: key[0], finalists.SEED_ATTR: key[1]})
    s.optimize(guarded, n_trials=4, catch=(finalists.NotRun,))
    assert trained == [(0, 1)]
    reasons = [t.user_attrs.get("fail_reason", "") for t in s.trials]
    assert "trial 0 already holds" in reasons[1] and "no longer a finalist" in reasons[2]
    assert "no finalist run was waiting" in reasons[3]


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


def seed_ensembles(spread, n_seeds=3, n_images=40, seed=0):
    """Per-tile errors of two seed ensembles: b worse on every image, each seed off by up to ``spread``."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_images), 3)
    base = rng.integers(-1, 2, len(groups))
    shift_a = rng.permutation(np.linspace(-spread, spread, n_seeds)).round()
    shift_b = rng.permutation(np.linspace(-spread, spread, n_seeds)).round()
    a = np.stack([base + s for s in shift_a])
    b = np.stack([base + 2 * np.sign(base + 0.5) + s for s in shift_b])
    return a, b, groups


def test_a_seed_spread_larger_than_the_gain_is_not_significant():
    a, b, groups = seed_ensembles(spread=0)
    steady = stats.compare_ensembles(a, b, groups)
    assert steady["significant"] and steady["high"] < 0
    a, b, groups = seed_ensembles(spread=6)
    noisy = stats.compare_ensembles(a, b, groups)
    # Over images alone the same difference still looks clear; the seeds' spread undoes it.
    images_only = stats.compare(stats.ensemble_counts(a), stats.ensemble_counts(b), groups)
    assert images_only["significant"] and images_only["high"] < 0
    assert not noisy["significant"] and noisy["low"] < 0 < noisy["high"]
    assert noisy["se_seeds"] > noisy["se_images"]


@pytest.mark.parametrize("n_seeds, n_images", [(1, 40), (3, 4)])
def test_too_few_seeds_or_images_give_a_sentence_not_an_interval(n_seeds, n_images):
    a, b, groups = seed_ensembles(spread=1, n_seeds=n_seeds, n_images=n_images)
    result = stats.compare_ensembles(a, b, groups, labels=("trial 3", "trial 0"))
    assert not result["significant"] and "low" not in result
    assert ("1 training seed of trial 3" if n_seeds == 1 else "4 validation images") in result["too_few"]
    images_only = stats.compare(a[0], b[0], groups)
    assert ("too_few" in images_only) is (n_images < stats.MIN_IMAGES)

    class Run:
        def __init__(self, number, errors):
            self.value = float(np.abs(errors).mean())
            self.user_attrs = {"val_errors": errors.tolist(), finalists.SEED_ATTR: number + 1}

    staged = [
        finalists.Finalist(3, "best", {}, list(range(1, n_seeds + 1)), [Run(i, e) for i, e in enumerate(a)]),
        finalists.Finalist(0, "seed baseline", {}, list(range(1, n_seeds + 1)), [Run(i, e) for i, e in enumerate(b)]),
    ]
    line = seed_verdict_line(staged, groups)
    assert "no interval, too few to estimate one" in line and "95%" not in line
    rows = finalist_rows(staged)
    assert rows[0]["sd"] is None if n_seeds == 1 else rows[0]["sd"] >= 0


def test_export_writes_the_winning_finalists_ensemble(tiny_files, tiny_profile, in_tmp, capsys):
    train, test, truth = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    assert export.main(["--test", str(test), "--truth", str(truth)]) == 0
    log = json.loads((in_tmp / "submission.json").read_text())
    staged = finalists.results(load())
    winner = min(staged, key=lambda f: stats.ensemble_mae(f.errors))
    assert log["trial"] == winner.trial and len(log["members"]) == 2
    assert [m["seed"] for m in log["members"]] == [1, 2]
    # The submission is the rounded mean of what each member's own checkpoint and counting give.
    images = np.load(test)["X"]
    counts = []
    for member, run in zip(log["members"], winner.runs):
        assert member["checkpoint"] == run.user_attrs["checkpoint"] and member["counting"] == run.user_attrs["counting"]
        net, _ = load_checkpoint(member["checkpoint"])
        counts.append(count_setting(predict_prob(net, images), member["counting"]))
    submission = pd.read_csv(in_tmp / "submission.csv")["count"].to_numpy()
    np.testing.assert_array_equal(submission, stats.ensemble_counts(np.stack(counts)))
    assert log["val_count_mae"] == pytest.approx(stats.ensemble_mae(winner.errors))
    assert "exported the ensemble of trial" in capsys.readouterr().out

    # The baseline's ensemble on request, refitted and with TTA per member; one trial alone with --trial.
    assert export.main(["--test", str(test), "--finalist", "0", "--refit", "--tta", "--out", "base.csv"]) == 0
    base = json.loads((in_tmp / "base.json").read_text())
    assert base["trial"] == 0 and base["tta"] and all(m["checkpoint"].endswith("refit") for m in base["members"])
    assert export.main(["--test", str(test), "--trial", "1", "--out", "one.csv"]) == 0
    one = json.loads((in_tmp / "one.json").read_text())
    assert [m["run"] for m in one["members"]] == ["trial 1"] and one["counting"] == load().trials[1].user_attrs[
        "counting"
    ]
    capsys.readouterr()
    assert export.main(["--test", str(test), "--finalist", "7"]) == 2
    assert "no finalist with a finished run" in capsys.readouterr().err


def test_export_before_any_finalist_run_exports_the_best_trial(tiny_files, tiny_profile, in_tmp, capsys):
    train, test, _ = tiny_files
    assert run_study(train, "--n-trials", "2") == 0  # the tiny profile has no stage
    assert export.main(["--test", str(test)]) == 0
    out = capsys.readouterr().out
    assert "no finalist run has finished" in out
    assert json.loads((in_tmp / "submission.json").read_text())["trial"] == load().best_trial.number
