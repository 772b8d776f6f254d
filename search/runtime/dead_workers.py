"""Trials of dead workers: failed and queued again, so that no trial stays running forever.

A trial records its worker as ``host:pid``. ``reap_dead_local_trials`` fails the running trials
whose process on this host is gone, at once and on every storage; ``fail_stale`` adds Optuna's
heartbeat check, which finds the dead workers of other hosts after its grace period.
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import optuna

from search.runtime.storage import MAX_RETRY, WORKER_ATTR, RetryWithoutWorker


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        # The state is the field after the parenthesised command name, which may hold spaces.
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return False
    except (OSError, IndexError):
        pass  # no /proc here, or the process is gone: os.kill decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def reap_dead_local_trials(study: optuna.Study) -> list[int]:
    """Fail the running trials whose worker process on this host is gone, and queue them again.

    Works on every storage, immediately (no grace period); the heartbeat covers other hosts.
    Returns the numbers of the trials failed.
    """
    host = socket.gethostname()
    retry = RetryWithoutWorker(max_retry=MAX_RETRY)
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner_host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if owner_host != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            # Before the state change (a finished trial takes no attribute); the retry drops it.
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"its worker process ({pid}) is gone")
            # The state change is the claim: of two workers reaping at once, one wins.
            if not study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry(study, study._storage.get_trial(trial._trial_id))
        reaped.append(trial.number)
    return reaped


def fail_stale(study: optuna.Study) -> None:
    """Fail and requeue trials of dead workers: local ones at once, others after the heartbeat grace."""
    for number in reap_dead_local_trials(study):
        print(f"trial {number}: its worker process is gone; failed and queued again", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
