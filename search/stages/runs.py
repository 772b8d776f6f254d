"""A training run's identity across its attempts: its saved state, and its queued copy when it stops.

A trial stopped by the timeout, Ctrl-C or SIGTERM fails and is queued again (``fail_and_requeue``);
one whose worker died is queued again by the reaper; a reference or finalist run lost otherwise
is queued again by the study's next command. Whichever trial takes the run up, it finds the
state the stopped attempt saved after its last finished epoch under the same *resume key*, and
training continues from there (``model.resume``): no finished epoch is lost to a stop.
"""

from __future__ import annotations

import logging
from pathlib import Path

import optuna

from search.roles import BASELINE_ATTR, REQUIRED, RUN_ATTRS, SEED_ATTR, WARM_START_ATTR, run_key

RESUME_ATTR = "resume_key"  # the name of the run's saved state, the same for each of its attempts
ROLE_ATTRS = (*REQUIRED, *RUN_ATTRS)  # which trial it is: baseline, warm start, finalist run
REQUEUED_ATTRS = (*ROLE_ATTRS, RESUME_ATTR)  # what a trial's queued copy keeps


class StudyTimeout(Exception):
    """Raised in a trial that the study's timeout stops before its last epoch: the trial fails."""


class NoTime(Exception):
    """Raised in a trial not started because its epochs would end after its deadline: the trial fails."""


def resume_key(trial: optuna.Trial) -> str:
    """The name of ``trial``'s saved state, recorded on the trial.

    Roles that a study holds once are named by the role, so a copy queued by any path (the
    next command queues a lost reference or finalist run afresh) finds the state; another
    trial keeps the name its first attempt was given, carried by its queued copies.
    """
    key = trial.user_attrs.get(RESUME_ATTR)
    if key is None:
        run, attrs = run_key(trial), trial.user_attrs
        if run is not None:
            key = f"run-{run[0]:04d}-fold{run[1]}-of{run[2]}-seed{attrs.get(SEED_ATTR)}"
        elif attrs.get(BASELINE_ATTR):
            key = "reference"
        elif attrs.get(WARM_START_ATTR):
            key = "warm-start"
        else:
            key = f"trial-{trial.number:04d}"
        trial.set_user_attr(RESUME_ATTR, key)
    return key


def state_file(folder: Path, trial: optuna.Trial) -> Path:
    """Where ``trial``'s run keeps its state: one file per run in ``folder``, the latest epoch's."""
    return Path(folder) / f"{resume_key(trial)}.pt"


def stop_at_timeout(trial: optuna.Trial, params: dict, epoch: int, epochs: int) -> StudyTimeout:
    """Record why the timeout stops ``trial`` and queue its parameters again; returns what to raise.

    The stopped trial fails, so it does not count towards --n-trials; the queued copy (still
    the baseline, the warm start or the finalist run if it was) continues after epoch ``epoch``
    when the study resumes, before any newly sampled trial (a baseline before every other, see
    ``workers.queue_first``).
    """
    trial.set_user_attr("stopped", "study timeout reached")
    reason = f"stopped by the study timeout after epoch {epoch} of {epochs}; queued again, to continue from there"
    return StudyTimeout(fail_and_requeue(trial, params, reason))


def stop_at_interrupt(trial: optuna.Trial, params: dict) -> None:
    """Record that Ctrl-C or SIGTERM stopped ``trial`` and queue it again, to continue from its saved state."""
    trial.set_user_attr("stopped", "interrupted")
    fail_and_requeue(trial, params, "interrupted (Ctrl-C or SIGTERM); queued again, to continue from its last epoch")


def fail_and_requeue(trial: optuna.Trial, params: dict, reason: str, queued_only: bool = False) -> str:
    """Record why ``trial`` fails and queue its parameters again; returns the reason.

    With ``queued_only``, a freshly sampled trial is not queued again: the sampler draws anew.
    """
    if queued_only and not any(k in trial.user_attrs for k in (*ROLE_ATTRS, "requeued_from")):
        trial.set_user_attr("fail_reason", reason)
        return reason
    reason += "; queued again" if queued_only else ""
    trial.set_user_attr("fail_reason", reason)
    attrs = {"requeued_from": trial.number}
    attrs.update({k: v for k, v in trial.user_attrs.items() if k in REQUEUED_ATTRS})
    trial.study.enqueue_trial(params, user_attrs=attrs)
    return reason


class QuietFailures(logging.Filter):
    """Drops Optuna's traceback of an expected failure, and its "failed with value None" after any.

    ``print_trial`` says in one line why any trial failed, and ``cli.run_command`` that Ctrl-C
    stopped the run; Optuna's traceback of an expected stop (the timeout, a trial not run,
    Ctrl-C) and its second line on every failure would only repeat it.
    """

    def __init__(self, expected: tuple):
        super().__init__()
        self.expected = expected

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], self.expected):
            return False
        return not record.getMessage().endswith("failed with value None.")
