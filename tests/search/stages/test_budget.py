"""The run's budget: the finalist stage reserved first at its measured cost, the search in what is left."""

import optuna
import pytest
from helpers import STAGE, Clock, load, load_runs, run_study, use_clock

from search import space, study
from search.stages import budget, objective

STATES = optuna.trial.TrialState
QUICK = space.PROFILES["quick"]


def test_the_stage_is_reserved_first_and_the_search_gets_the_rest():
    plan = budget.Plan(6.0, 1080, 0, [16, 12, 16, 12], 7.5, workers=1)
    assert plan.stage_seconds == pytest.approx(56 * 7.5)
    assert plan.search_seconds == pytest.approx(1080 - 420)
    assert plan.runs_that_fit == 4
    assert "reserved first; the search gets about 11.0 min" in plan.line()
    # Two workers share the runs: half the reserve.
    assert budget.Plan(6.0, 1080, 0, [16, 12, 16, 12], 7.5, workers=2).stage_seconds == pytest.approx(210)


def test_a_plan_that_cannot_fit_shrinks_the_search_then_says_which_runs_fit():
    # An fp32-only CPU: the baseline and warm start (28 epochs) alone take 12 of the 18 minutes.
    slow = budget.Plan(26.0, 1080, 28, [16, 12, 16, 12], 31.2, workers=1)
    assert slow.search_seconds < slow.required_seconds
    assert slow.runs_that_fit == 0
    line = slow.line()
    assert "no other search trial, 0 of 4 finalist runs fit" in line and "run the same command again" in line
    assert budget.Plan(10.0, 1080, 28, [16, 12, 16, 12], 12.0, workers=1).runs_that_fit == 4  # 952 s
    assert budget.Plan(15.0, 1080, 28, [16, 12, 16, 12], 18.0, workers=1).runs_that_fit == 2


def recorded_study(epoch_seconds, waiting_baseline=False):
    s = optuna.create_study()
    for value, epochs in ((2.0, 12), (1.5, 16)):
        s.add_trial(
            optuna.trial.create_trial(
                params={"epochs": epochs},
                distributions={"epochs": optuna.distributions.IntDistribution(1, 60)},
                value=value,
                user_attrs={"epoch_seconds": epoch_seconds, "baseline": epochs == 12},
            )
        )
    if waiting_baseline:
        s.enqueue_trial({"epochs": 12}, user_attrs={"baseline": True})
    s.set_user_attr("folder", "cells-00000000")
    return s


def test_search_stops_when_the_finalist_runs_still_to_do_would_need_the_rest(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(budget, "time", clock)
    b = budget.Budget(recorded_study(6.0), QUICK, 2, 2, 0, workers=1, timeout=1080)
    # The best (16 epochs) and the baseline (12) once per fold, at the search's speed times the fold factor.
    reserve = 56 * 6.0 * budget.STAGE_EPOCH_FACTOR
    assert b.stage_epochs() == [16, 12, 16, 12]
    assert b.deadline - b.search_until() == pytest.approx(reserve)
    clock.skew = 1000.0  # whatever the time, the reserve stays whole
    assert b.deadline - b.search_until() == pytest.approx(reserve)


def test_the_baseline_waiting_runs_to_the_deadline(monkeypatch):
    b = budget.Budget(recorded_study(26.0, waiting_baseline=True), QUICK, 2, 2, 0, workers=1, timeout=1080)
    assert b.required_epochs() == 12
    assert b.search_until() == b.deadline


def test_no_trial_starts_whose_epochs_cannot_finish_in_time(tiny_files, tiny_profile, in_tmp, monkeypatch, capsys):
    clock, real_fit, fits = Clock(), objective.fit, []
    use_clock(monkeypatch, clock)

    def slow_fit(*args, **kwargs):
        fits.append(1)
        result = real_fit(*args, **kwargs)
        # Each training takes 1000 s (500 s or more per epoch): margins of minutes of real time.
        clock.skew += 1000.0
        return result

    monkeypatch.setattr(objective, "fit", slow_fit)
    train, _, _ = tiny_files
    args = ["--train", str(train), "--profile", "tiny", "--n-trials", "5", "--timeout", "2300", "--finalists", "0"]
    assert study.main(args) == 0
    trials = optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db").trials
    # The baseline and warm start ran; the next trial would end after the deadline: failed untrained.
    assert len(fits) == 2 and [t.state for t in trials[:2]] == [STATES.COMPLETE] * 2
    assert trials[2].state == STATES.FAIL and trials[2].user_attrs["fail_reason"].startswith("not run: its")
    out = capsys.readouterr().out
    assert "search ended: the next trial would not finish" in out and "plan at" in out


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
