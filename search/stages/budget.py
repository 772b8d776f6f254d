"""The time budget of one ``python -m search.study`` run, planned from this machine's measured speed.

The finalist stage is what the study's answer rests on, so it is reserved first, at its
measured cost: the epochs its runs still to do will train, times the seconds an epoch takes
here. The search gets what is left. The reference and the warm start are the least search a
verdict needs: they run whatever the reserve. Every run saves its state after each epoch, so
nothing waits for a run that "fits": runs start while there is time and continue in the next
command where one stopped.

Without ``--timeout`` the command does the whole job: when the reference, the warm start and
the stage need more than the profile's budget on this machine, it runs them to the end and says
at the first epoch when the verdict will be there. With ``--timeout`` it stops at the budget,
mid-run if need be, and says how many commands of that budget the job takes.
"""

from __future__ import annotations

import datetime
import math
import time
from dataclasses import dataclass

import numpy as np
import optuna

from search import space
from search.roles import is_required
from search.stages import finalists

STATES = optuna.trial.TrialState
# A finalist run skips the per-epoch validation of a search trial and is scored once, on its
# held-out fold: until one has run here, an epoch of it is estimated at this many search
# epochs. Measured on the embedded data (BENCHMARKS.md, "One command, the whole job"): 0.88 with
# bf16 on 2 threads, 1.0 in fp32 on 2 threads, 0.9 in fp32 on 1 thread.
STAGE_EPOCH_FACTOR = 0.9


def planned_params(trial: optuna.trial.FrozenTrial) -> dict:
    """A trial's parameters: those it ran with, or, while it waits, those it was queued with."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def clock_in(seconds: float) -> str:
    """The time of day ``seconds`` from now, e.g. ``16:05``."""
    return (datetime.datetime.now() + datetime.timedelta(seconds=min(seconds, 1e8))).strftime("%H:%M")


@dataclass(frozen=True)
class Plan:
    """What fits the time left, at ``epoch_seconds`` per epoch.

    ``left`` counts to the end of the budget; ``finish`` says whether the command runs the
    reference, the warm start and the stage to the end past it (no ``--timeout``).
    """

    epoch_seconds: float
    left: float  # seconds left in the budget
    required_epochs: int  # epochs of the baseline and warm start still to train
    stage_epochs: list[int]  # epochs of each finalist run still to do, in plan order
    stage_epoch_seconds: float
    workers: int
    finish: bool = True
    budget: float = math.inf  # the whole budget, seconds (for "N commands of it")

    @property
    def required_seconds(self) -> float:
        return self.required_epochs * self.epoch_seconds

    @property
    def stage_seconds(self) -> float:
        return sum(self.stage_epochs) * self.stage_epoch_seconds / self.workers

    @property
    def search_seconds(self) -> float:
        """Seconds left for the search, the baseline and warm start included (may be negative)."""
        return self.left - self.stage_seconds

    @property
    def job_seconds(self) -> float:
        """Seconds the least whole job still needs: the reference, the warm start and the stage."""
        return self.required_seconds + self.stage_seconds

    @property
    def runs_that_fit(self) -> int:
        """Finalist runs that end inside the budget after the least search, in plan order."""
        room, fitted = (self.left - self.required_seconds) * self.workers, 0
        for epochs in self.stage_epochs:
            room -= epochs * self.stage_epoch_seconds
            if room < 0:
                break
            fitted += 1
        return fitted

    def line(self) -> str:
        """The plan in one line: speed, what the whole job needs, and when the verdict will be there."""
        runs = len(self.stage_epochs)
        head = f"plan at {self.epoch_seconds:.1f} s per epoch (measured here)"
        if runs == 0:
            return f"{head}: no finalist run to do; the search has the {self.left / 60:.1f} min left"
        job = (
            f"the whole job (reference and warm start: {self.required_epochs} epochs to train; finalist stage: "
            f"{runs} runs, {sum(self.stage_epochs)} epochs) needs about {self.job_seconds / 60:.1f} min here"
        )
        if self.search_seconds >= self.required_seconds:
            return (
                f"{head}: {job}; the stage is reserved first and the search gets about "
                f"{self.search_seconds / 60:.1f} min: verdict at about {clock_in(self.left)}"
            )
        budgets = f"{self.job_seconds / self.budget:.1f} budgets of {self.budget / 60:.0f} min"
        if self.finish:
            return (
                f"{head}: {job}, {budgets}: no other search trial; this command runs the job to the end "
                f"(no --timeout): verdict at about {clock_in(self.job_seconds)}, in {self.job_seconds / 60:.0f} min"
            )
        commands = math.ceil(self.job_seconds / self.budget - 1e-9) if self.left >= self.budget - 1 else None
        more = f" (the verdict with the {ordinal(commands)} command)" if commands else ""
        return (
            f"{head}: {job}, more than the {self.left / 60:.1f} min left: no other search trial, "
            f"{self.runs_that_fit} of {runs} finalist runs end in this command; it stops at --timeout and the "
            f"same command continues where it stopped, {budgets}{more}"
        )


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..."""
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n if n < 20 else n % 10, 'th') }"


class Budget:
    """The run's deadlines and the finalist reserve, as this machine's speed becomes known.

    Parameters
    ----------
    study : optuna.Study
        The search study.
    profile : space.Profile
        Its profile (a finalist not known yet trains its longest epochs).
    k, folds : int
        Finalists and folds of the stage (``k`` 0: no stage).
    seed : int
        The study's ``--seed`` (the plan's seeds).
    workers : int
        Processes sharing the finalist runs.
    timeout : float
        Seconds for the search and the stage together.
    finish : bool
        Run the reference, the warm start and the stage to the end, however long (no
        ``--timeout``); False: every run stops at the budget (``deadline``).
    """

    def __init__(
        self, study, profile: space.Profile, k: int, folds: int, seed: int, workers: int, timeout: float, finish=False
    ):
        self.study, self.profile, self.k, self.folds, self.seed, self.workers = study, profile, k, folds, seed, workers
        self.timeout, self.finish = timeout, finish
        self.budget_end = time.monotonic() + timeout
        self.deadline = math.inf if finish else self.budget_end  # when every run stops
        self.search_epochs: list[float] = []  # seconds of the search epochs this process trained
        self.stage_epochs_trained: list[float] = []  # and of its finalist epochs
        self.announced = False

    def recorded(self) -> tuple[float | None, float | None]:
        """Seconds per search and per finalist epoch that the study recorded (perhaps on another machine)."""
        search = finalists.epoch_seconds(self.study.get_trials(deepcopy=False, states=(STATES.COMPLETE,)))
        staged = finalists.open_finalists(self.study)
        stage = None if staged is None else finalists.epoch_seconds(staged.get_trials(deepcopy=False))
        return search, stage

    @property
    def measured(self) -> float | None:
        """This process's median search epoch: one slow epoch (the first, a busy moment) does not sway it."""
        return float(np.median(self.search_epochs)) if self.search_epochs else None

    @property
    def measured_stage(self) -> float | None:
        """This process's median finalist epoch."""
        return float(np.median(self.stage_epochs_trained)) if self.stage_epochs_trained else None

    def speeds(self) -> tuple[float | None, float | None]:
        """Seconds per search and per finalist epoch on this machine now.

        This process's own epochs come first; a recorded figure counts only scaled by how much
        faster or slower this process runs than the record (a study resumed on another
        machine, or one now shared), and the record alone only until this process has trained.
        """
        search, stage = self.recorded()
        ratio = None
        if self.measured is not None and search:
            ratio = self.measured / search
        elif self.measured_stage is not None and stage:
            ratio = self.measured_stage / stage
        elif self.measured_stage is not None:
            search = self.measured_stage / STAGE_EPOCH_FACTOR
        search = self.measured or (search * ratio if ratio and search else search)
        stage = self.measured_stage or (stage * ratio if ratio and stage else stage)
        if stage is None and search is not None:
            stage = search * STAGE_EPOCH_FACTOR
        return search, stage

    def epoch_seconds(self) -> float | None:
        """Seconds an epoch of a search trial costs here, or None before anything is known."""
        return self.speeds()[0]

    def stage_epoch_seconds(self) -> float | None:
        """Seconds an epoch of a finalist run costs here, or None before anything is known."""
        return self.speeds()[1]

    def stage_epochs(self) -> list[int]:
        """Epochs of each finalist run still to do; finalists not known yet count those of the queued
        reference and warm start (they will be finalists when they finish), then the profile's longest."""
        if self.k == 0:
            return []
        plan = finalists.make_plan(self.study, self.k, self.folds, self.seed)
        epochs = finalists.run_epochs(plan, finalists.open_finalists(self.study))
        unknown = max(0, self.k - len(plan["finalists"]))  # a centre-target finalist may make one more
        queued = sorted((planned_params(t)["epochs"] for t in self.required_trials()), reverse=True)
        guesses = (queued + [self.profile.epochs[1]] * unknown)[:unknown]
        return epochs + [e for e in guesses for _ in range(self.folds)]

    def required_trials(self) -> list[optuna.trial.FrozenTrial]:
        """The queued or running baseline and warm start."""
        trials = self.study.get_trials(deepcopy=False, states=(STATES.WAITING, STATES.RUNNING))
        return [t for t in trials if is_required(t)]

    def required_epochs(self) -> int:
        """Epochs of the queued or running baseline and warm start."""
        return sum(planned_params(t).get("epochs", 0) for t in self.required_trials())

    def plan(self) -> Plan | None:
        """The plan from now on, or None before the speed is known."""
        per_epoch, per_stage_epoch = self.speeds()
        if per_epoch is None:
            return None
        left = self.budget_end - time.monotonic()
        return Plan(
            per_epoch,
            left,
            self.required_epochs(),
            self.stage_epochs(),
            per_stage_epoch,
            self.workers,
            self.finish,
            self.timeout,
        )

    def search_until(self, trial: optuna.Trial | None = None) -> float:
        """When the search stops (for ``trial``, when it must stop): before the finalist reserve.

        The baseline and warm start run to the run's deadline, and the search goes on while one
        of them waits: they are the least search a verdict needs.
        """
        required = is_required(trial) if trial is not None else bool(self.required_trials())
        if required:
            return self.deadline
        plan = self.plan()  # read after every epoch of a search trial: only where the reserve matters
        return self.budget_end - (plan.stage_seconds if plan is not None else 0.0)

    def on_epoch_seconds(self, seconds: float) -> None:
        """Record a search epoch this process trained; print the plan the first time."""
        self.search_epochs.append(seconds)
        if not self.announced:
            self.announce()

    def on_stage_epoch_seconds(self, seconds: float) -> None:
        """Record a finalist epoch this process trained; print the plan the first time."""
        self.stage_epochs_trained.append(seconds)
        if not self.announced:
            self.announce()

    def announce(self) -> bool:
        """Print the plan if the speed is known; returns whether it did."""
        plan = self.plan()
        if plan is None:
            return False
        print(plan.line(), flush=True)
        self.announced = True
        return True
