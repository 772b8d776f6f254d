"""The run's budget: the finalist stage reserved first at its measured cost, the search in what is left."""

import dataclasses

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
    assert "the stage is reserved first and the search gets about 11.0 min" in plan.line()
    # Two workers share the runs: half the reserve.
    assert budget.Plan(6.0, 1080, 0, [16, 12, 16, 12], 7.5, workers=2).stage_seconds == pytest.approx(210)


def test_the_first_plan_line_says_how_long_the_whole_job_takes_and_when_the_verdict_comes(monkeypatch):
    monkeypatch.setattr(budget, "clock_in", lambda seconds: f"<in {seconds:.0f} s>")
    # An fp32-only CPU: the baseline and warm start (28 epochs) and the stage take 41 of the 18 minutes.
    slow = budget.Plan(26.0, 1080, 28, [16, 12, 16, 12], 23.4, workers=1, finish=True, budget=1080)
    assert slow.search_seconds < slow.required_seconds
    assert slow.job_seconds == pytest.approx(28 * 26 + 56 * 23.4)
    line = slow.line()
    assert "needs about 34.0 min here, 1.9 budgets of 18 min: no other search trial" in line
    assert "runs the job to the end" in line and f"verdict at about <in {slow.job_seconds:.0f} s>, in 34 min" in line
    # With --timeout: it stops there, and says which command brings the verdict.
    stops = budget.Plan(26.0, 1080, 28, [16, 12, 16, 12], 23.4, workers=1, finish=False, budget=1080).line()
    assert "0 of 4 finalist runs end in this command" in stops and "(the verdict with the 2nd command)" in stops
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


def test_unknown_finalists_count_the_queued_reference_and_warm_start_epochs():
    s = optuna.create_study()
    s.enqueue_trial({"epochs": 12}, user_attrs={"baseline": True})
    s.enqueue_trial({"epochs": 16}, user_attrs={"warm_start": True})
    s.set_user_attr("folder", "cells-00000000")
    b = budget.Budget(s, QUICK, 2, 2, 0, workers=1, timeout=1080, finish=True)
    assert b.stage_epochs() == [16, 16, 12, 12] and b.required_epochs() == 28
    assert b.deadline == float("inf") and b.search_until() == float("inf")  # the reference and warm start finish


def test_the_plan_trusts_this_machines_speed_over_the_recorded_one():
    # Recorded at 6 s per epoch elsewhere; here epochs take 15 s: the plan uses 15, and the
    # finalist epochs the study recorded are scaled alike.
    b = budget.Budget(recorded_study(6.0), QUICK, 2, 2, 0, workers=1, timeout=1080)
    assert b.epoch_seconds() == pytest.approx(6.0)
    b.on_epoch_seconds(15.0)
    assert b.epoch_seconds() == pytest.approx(15.0)
    assert b.stage_epoch_seconds() == pytest.approx(15.0 * budget.STAGE_EPOCH_FACTOR)
    assert "plan at 15.0 s per epoch (measured here)" in b.plan().line()


def test_the_baseline_waiting_runs_to_the_deadline(monkeypatch):
    b = budget.Budget(recorded_study(26.0, waiting_baseline=True), QUICK, 2, 2, 0, workers=1, timeout=1080)
    assert b.required_epochs() == 12
    assert b.search_until() == b.deadline


def test_no_trial_starts_whose_epochs_cannot_finish_in_time(tiny_files, tiny_profile, in_tmp, monkeypatch, capsys):
    clock, real_fit, fits = Clock(), objective.fit, []
    use_clock(monkeypatch, clock)

    def slow_fit(*args, on_epoch, **kwargs):
        fits.append(1)

        def slow_epoch(r):
            # Each epoch takes 500 s, as measured and by the clock: margins of minutes of real time.
            clock.skew += 500.0
            on_epoch(dataclasses.replace(r, seconds=500.0, steady_seconds=500.0))

        return real_fit(*args, on_epoch=slow_epoch, **kwargs)

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

    def slow_fit(*args, on_epoch, **kwargs):
        def slow_epoch(r):
            clock.skew += 50.0  # every epoch takes 50 s, every training 100 s
            on_epoch(dataclasses.replace(r, seconds=50.0, steady_seconds=50.0))

        return real_fit(*args, on_epoch=slow_epoch, **kwargs)

    monkeypatch.setattr(objective, "fit", slow_fit)
    train, _, _ = tiny_files
    # 1000 s: each epoch takes 50; the 4 finalist runs (8 epochs) are reserved at the stage factor,
    # so the search stops at about 1000 - 400 * factor, with trials of 1 or 2 epochs.
    assert run_study(train, "--n-trials", "40", "--timeout", "1000", *STAGE) == 0
    searched = [t for t in load().trials if t.state.is_finished()]
    stop = 1000 - 400 * budget.STAGE_EPOCH_FACTOR
    assert stop / 100 <= len(searched) <= stop / 50
    assert [t.state for t in load_runs()] == [STATES.COMPLETE] * 4
    assert clock.skew <= 1000 + 100
