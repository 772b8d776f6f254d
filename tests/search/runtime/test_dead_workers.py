"""search.runtime.dead_workers: a worker killed mid-trial, or a zombie, is found dead; its trial is retried."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from helpers import HANG_BOUND, finished_trials, needs_proc, start_worker, tiny_args, wait_for_line

from search import study
from search.runtime import dead_workers, storage

STATES = optuna.trial.TrialState


@pytest.mark.slow  # subprocesses or a PostgreSQL server
@pytest.mark.parametrize("store, reap", [("sqlite:///studies/cells.db", False), ("studies/cells.journal.log", True)])
def test_killed_worker_trial_is_failed_and_retried(tiny_files, tiny_profile, in_tmp, monkeypatch, store, reap):
    """SIGKILL mid-trial: heartbeat (database) or dead-process check (journal) fails and requeues it."""
    if not reap:  # only the heartbeat can find it
        monkeypatch.setattr(dead_workers, "reap_dead_local_trials", lambda s: [])
    train, _, _ = tiny_files
    args = ("--storage", store, "--n-trials", "3", "--heartbeat", "1", "--timeout", "60")
    victim = start_worker(train, *args, env={"TINY_WORKER_HANG": "1"})
    watchdog = threading.Timer(HANG_BOUND, victim.kill)  # never wait on a stuck victim
    watchdog.start()
    wait_for_line(victim, "epoch 1/")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    watchdog.cancel()
    assert study.main(tiny_args(train, *args)) == 0
    s = optuna.load_study(study_name="cells", storage=storage.open_storage(store))
    assert s.trials[0].state == STATES.FAIL
    retries = [t for t in s.trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].state == STATES.COMPLETE and retries[0].user_attrs["baseline"]
    assert len(finished_trials(s)) == 3
    if reap:  # found dead at once: the retried baseline starts before the warm start queued ahead of it
        warm = next(t for t in s.trials if t.user_attrs.get("warm_start") and t.state == STATES.COMPLETE)
        assert retries[0].datetime_start < warm.datetime_start


def proc_state(pid):
    """The state letter of process ``pid`` in /proc (Z: a zombie), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


@needs_proc
def test_a_zombie_worker_counts_as_dead():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(600):  # exited but not reaped: a zombie
            if proc_state(proc.pid) == "Z":
                break
            time.sleep(0.05)
        assert proc_state(proc.pid) == "Z"
        assert not dead_workers._pid_alive(proc.pid)
    finally:
        proc.wait()
    assert dead_workers._pid_alive(os.getpid())


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # s.ask() here, not study.optimize
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # the retry callback's notice
def test_retried_trial_does_not_inherit_the_dead_worker(in_tmp):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    s = optuna.create_study(storage=storage.open_storage("studies/r.journal.log"))
    trial = s.ask()
    trial.set_user_attr(storage.WORKER_ATTR, f"{socket.gethostname()}:{dead.pid}")
    trial.set_user_attr("baseline", True)
    assert dead_workers.reap_dead_local_trials(s) == [0]
    retry = s.trials[1]
    assert retry.state == STATES.WAITING and retry.user_attrs == {"baseline": True}
    # The heartbeat's retry on a database storage drops it too.
    rdb = storage.open_storage("sqlite:///studies/r.db", heartbeat=1)
    s = optuna.create_study(storage=rdb)
    s.ask().set_user_attr(storage.WORKER_ATTR, "otherhost:1")
    rdb.get_heartbeat_stale_trial_callback()(s, s.trials[0])
    assert storage.WORKER_ATTR not in s.trials[1].user_attrs
