"""Several worker processes on one study, and a run loop that stops at exactly the target.

``spawn_and_wait`` starts ``--workers N`` copies of ``python -m search.study`` that share one storage,
one GPU each when several are visible, else a share of the CPU threads. ``run_until_target``
replaces ``study.optimize``'s own stopping rule: a worker starts a trial only while finished plus
running trials stay below the target, and ``TrialGuard`` fails the rare trial started in the
same instant by two workers, so the study ends with exactly the target of finished trials; each
look at the study first fails and requeues the trials of dead workers (``dead_workers``).
``queue_first`` moves a waiting trial (the reference) ahead of the others.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

import optuna
import torch

from search.errors import Failed
from search.runtime import dead_workers
from search.runtime.storage import STORAGE_ENV, WORKER_ATTR, worker_id

STATES = optuna.trial.TrialState
FINISHED = (STATES.COMPLETE, STATES.PRUNED)
POLL_SECONDS = 2.0  # how often a worker with no trial to start looks again
CHILD_POLL_SECONDS = 0.2  # how often the parent of --workers looks for children that exited
CHILD_COMMAND = [sys.executable, "-m", "search.study"]  # what --workers starts, before the arguments


class SurplusTrial(Exception):
    """Raised for a trial started after other workers had already filled the target."""


def gpu_for(index: int) -> str | None:
    """The CUDA_VISIBLE_DEVICES entry of worker ``index``: round robin over visible GPUs, or None."""
    if not torch.cuda.is_available():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    return gpus[index % len(gpus)] if len(gpus) > 1 else None


def worker_threads(workers: int) -> int:
    """CPU threads for one of ``workers`` processes: the cores split evenly."""
    return max(1, (os.cpu_count() or 1) // workers)


def _forward(stream, prefix: str) -> None:
    for line in stream:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


class WorkersFailed(Failed):
    """A worker process exited with an error."""


def without_storage(argv: list[str]) -> list[str]:
    """``argv`` without its ``--storage`` option, also written ``--storage=URL`` or abbreviated."""
    kept, skip_value = [], False
    for token in argv:
        name = token.split("=", 1)[0]
        if skip_value:
            skip_value = False
        elif len(name) > len("--st") and "--storage".startswith(name):  # argparse takes unique prefixes
            skip_value = "=" not in token
        else:
            kept.append(token)
    return kept


def wait_all(procs: list[subprocess.Popen]) -> list[int]:
    """Exit codes of ``procs``, reaping each as soon as it exits, whatever the order.

    Waiting on them in order would leave a later child that died as a zombie, which the
    other workers' liveness check would still see running.
    """
    while None in [p.poll() for p in procs]:  # a list, not any(): every child is polled each time
        time.sleep(CHILD_POLL_SECONDS)
    return [p.returncode for p in procs]


def spawn_and_wait(argv: list[str], workers: int, storage_url: str) -> None:
    """Run ``workers`` child processes of ``python -m search.study argv`` on ``storage_url``.

    Each child's output lines are printed with a ``[worker i]`` prefix. The storage URL goes
    to the children in ``CELLCOUNT_STORAGE``: on a command line, ``ps`` would show its
    password. Raises WorkersFailed when one exits with an error, KeyboardInterrupt (after
    they all stopped) on Ctrl-C.
    """
    procs, threads = [], []
    for i in range(workers):
        env = {**os.environ, STORAGE_ENV: storage_url}
        gpu = gpu_for(i)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        cmd = [*CHILD_COMMAND, *without_storage(argv), "--worker-index", str(i)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, bufsize=1)
        thread = threading.Thread(target=_forward, args=(proc.stdout, f"[worker {i}] "), daemon=True)
        thread.start()
        procs.append(proc)
        threads.append(thread)
    try:
        codes = wait_all(procs)
    except KeyboardInterrupt:
        # Ctrl-C reached the children too, SIGTERM only this process: pass it on, then let
        # them save their runs, queue them again and exit.
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise
    for t in threads:
        t.join()
    bad = [f"worker {i} exited with code {c}" for i, c in enumerate(codes) if c]
    if bad:
        raise WorkersFailed("; ".join(bad) + ": run the same command to resume")


def counts(study: optuna.Study) -> tuple[int, int]:
    """Finished (complete or pruned) and running trials of the study."""
    trials = study.get_trials(deepcopy=False, states=(*FINISHED, STATES.RUNNING))
    finished = sum(t.state in FINISHED for t in trials)
    return finished, len(trials) - finished


class TrialGuard:
    """Wraps the objective: records the worker, fails surplus trials and out-of-memory alone."""

    def __init__(self, objective, target: int):
        self.objective, self.target = objective, target

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, worker_id())
        # Trial numbers are issued atomically: earlier finished or running trials have priority.
        earlier = [
            t
            for t in trial.study.get_trials(deepcopy=False, states=(*FINISHED, STATES.RUNNING))
            if t.number < trial.number
        ]
        if len(earlier) >= self.target:
            reason = "not run: other workers had already filled the study's target"
            trial.set_user_attr("fail_reason", reason)
            raise SurplusTrial(reason)
        try:
            return self.objective(trial)
        except torch.cuda.OutOfMemoryError as exc:
            message = str(exc.args[0]) if exc.args else ""
            reason = f"out of GPU memory: {message.splitlines()[0] if message else 'no detail'}"
            trial.set_user_attr("fail_reason", reason)
            torch.cuda.empty_cache()
            raise


def claim(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Take waiting ``trial`` off the queue as a worker starting it would; False if another did first."""
    try:
        return study._storage.set_trial_state_values(trial._trial_id, STATES.RUNNING)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def queue_first(study: optuna.Study, first: Callable[[optuna.trial.FrozenTrial], bool]) -> None:
    """Queue the waiting trials ahead of the first waiting one that ``first`` picks again, behind it.

    Optuna starts waiting trials lowest number first, so a trial queued again (the reference
    after Ctrl-C, a timeout or a dead worker) would wait behind those queued before it. Each one
    moved is claimed as a worker starting it would claim it (of two workers, one wins), copied
    to the end of the queue, and failed as "not run": it neither runs twice, nor is lost, nor
    counts towards the target. The claim records this worker, so a kill before the claimed
    trial is failed leaves it to the dead-worker check, which queues it again.
    """
    waiting = study.get_trials(deepcopy=False, states=(STATES.WAITING,))
    ahead = next((t.number for t in waiting if first(t)), None)
    for trial in waiting:
        if ahead is None or trial.number >= ahead or not claim(study, trial):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, WORKER_ATTR, worker_id())
        copy = optuna.trial.create_trial(
            state=STATES.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=trial.user_attrs,
            system_attrs=trial.system_attrs,
            intermediate_values=trial.intermediate_values,
        )
        number = study._storage.get_trial_number_from_id(
            study._storage.create_new_trial(study._study_id, template_trial=copy)
        )
        reason = f"not run: queued again as trial {number}, behind trial {ahead}, which starts first"
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        study._storage.set_trial_state_values(trial._trial_id, STATES.FAIL)
        print(f"trial {trial.number} {reason}", flush=True)


def _nap(deadline: float) -> None:
    """Sleep until the next look at the study: ``POLL_SECONDS``, or less if ``deadline`` comes first."""
    time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def run_until_target(
    study: optuna.Study,
    objective,
    target: int,
    deadline: Callable[[], float],
    catch: tuple,
    callbacks: list,
    should_stop=lambda: False,
    first: Callable[[optuna.trial.FrozenTrial], bool] | None = None,
) -> None:
    """Run trials one at a time until the study has ``target`` finished trials or time is up.

    Parameters
    ----------
    study, objective
        The study and its objective (wrapped here in a ``TrialGuard``).
    target : int
        Finished (complete or pruned) trials the study should end with, all workers together.
    deadline : callable
        Returns the ``time.monotonic()`` after which no trial starts; read before each one.
    catch, callbacks
        As for ``study.optimize``; ``SurplusTrial`` and CUDA out-of-memory are added to ``catch``.
    should_stop : callable
        Checked after each trial: True ends the run (e.g. too many failures).
    first : callable, optional
        Picks a waiting trial that starts before every other waiting one (:func:`queue_first`),
        checked before each trial: a dead worker's trial may be queued again at any time.
    """
    guarded = TrialGuard(objective, target)
    catch = (*catch, SurplusTrial, torch.cuda.OutOfMemoryError)
    waiting = False
    while time.monotonic() < deadline() and not should_stop():
        dead_workers.fail_stale(study)
        if first is not None:
            queue_first(study, first)
        finished, running = counts(study)
        if finished >= target:
            return
        if finished + running >= target:
            # Running trials elsewhere would reach the target: wait in case one of them dies.
            if not waiting:
                print(f"waiting: {running} trials running elsewhere would reach the target {target}", flush=True)
            waiting = True
            _nap(deadline())
            continue
        waiting = False
        study.optimize(guarded, n_trials=1, catch=catch, callbacks=callbacks)


def wait_until_idle(study: optuna.Study, deadline: float) -> None:
    """Wait while trials of ``study`` run elsewhere (or until ``deadline``), failing those of dead workers."""
    while time.monotonic() < deadline:
        dead_workers.fail_stale(study)
        if not study.get_trials(deepcopy=False, states=(STATES.RUNNING,)):
            return
        _nap(deadline)


def run_queue(
    study: optuna.Study, objective, deadline: float, catch: tuple, callbacks: list, should_stop=lambda: False
) -> None:
    """Run the study's queued trials one at a time until none is left, ``deadline`` has passed or ``should_stop()``.

    While nothing waits but trials run elsewhere, it waits too: a worker that dies leaves its
    trial queued again (by the reaper or the heartbeat), and this worker then runs it.
    """
    guarded = TrialGuard(objective, math.inf)  # the worker record and out-of-memory handling, no target
    catch = (*catch, torch.cuda.OutOfMemoryError)
    while time.monotonic() < deadline and not should_stop():
        dead_workers.fail_stale(study)
        if study.get_trials(deepcopy=False, states=(STATES.WAITING,)):
            study.optimize(guarded, n_trials=1, catch=catch, callbacks=callbacks)
        elif study.get_trials(deepcopy=False, states=(STATES.RUNNING,)):
            _nap(deadline)
        else:
            return
