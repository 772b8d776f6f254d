"""The time budget of one ``python -m search.study`` run, planned from measured speed.

The finalist stage is what the study's answer rests on, so it is reserved first, at its
measured cost: the epochs its runs still to do will train, times the seconds an epoch has
taken. The search gets what is left. The reference and the warm start are the least
search a verdict needs: they run whatever the reserve, and when even they and the stage do not
fit, the plan says what will, and the rest stays queued for the next run of the same command.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import optuna

from search import space
from search.roles import is_required
from search.stages import finalists

STATES = optuna.trial.TrialState
# A finalist run skips the per-epoch validation of a search trial but is scored, once, on a
# held-out fold about twice the validation images: until one has run, an epoch of it is
# estimated at this many search epochs, on the safe side (the stage must finish).
STAGE_EPOCH_FACTOR = 1.2


def planned_params(trial: optuna.trial.FrozenTrial) -> dict:
    """A trial's parameters: those it ran with, or, while it waits, those it was queued with."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


@dataclass(frozen=True)
class Plan:
    """What fits the time left, at ``epoch_seconds`` per epoch."""

    epoch_seconds: float
    left: float  # seconds left in the budget
    required_epochs: int  # epochs of the baseline and warm start still to train
    stage_epochs: list[int]  # epochs of each finalist run still to do, in plan order
    stage_epoch_seconds: float
    workers: int

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
    def runs_that_fit(self) -> int:
        """Finalist runs that fit after the least search, in plan order."""
        room, fitted = (self.left - self.required_seconds) * self.workers, 0
        for epochs in self.stage_epochs:
            room -= epochs * self.stage_epoch_seconds
            if room < 0:
                break
            fitted += 1
        return fitted

    def line(self) -> str:
        """The plan in one line: speed, the stage's reserve, the search's share, or what will not fit."""
        runs = len(self.stage_epochs)
        head = f"plan at {self.epoch_seconds:.1f} s per epoch"
        if runs == 0:
            return f"{head}: no finalist run to do; the search has the {self.left / 60:.1f} min left"
        epochs = sum(self.stage_epochs)
        stage = f"the finalist stage ({runs} runs, {epochs} epochs) needs about {self.stage_seconds / 60:.1f} min"
        if self.search_seconds >= self.required_seconds:
            return f"{head}: {stage}, reserved first; the search gets about {self.search_seconds / 60:.1f} min"
        fit = self.runs_that_fit
        return (
            f"{head}: {stage}, which with the reference and warm start ({self.required_epochs} epochs) is more "
            f"than the {self.left / 60:.1f} min left: no other search trial, {fit} of {runs} finalist runs fit; "
            "the rest stay queued and run first when you run the same command again"
        )


class Budget:
    """The run's deadline, the finalist reserve and the search's deadline, as the speed becomes known.

    Parameters
    ----------
    study : optuna.Study
        The search study.
    profile : space.Profile
        Its profile (a planned configuration not known yet trains its longest epochs).
    k, folds : int
        Finalists and folds of the stage (``k`` 0: no stage).
    seed : int
        The study's ``--seed`` (the plan's seeds).
    workers : int
        Processes sharing the finalist runs.
    timeout : float
        Seconds for the whole run.
    """

    def __init__(self, study, profile: space.Profile, k: int, folds: int, seed: int, workers: int, timeout: float):
        self.study, self.profile, self.k, self.folds, self.seed, self.workers = study, profile, k, folds, seed, workers
        self.deadline = time.monotonic() + timeout
        self.measured: float | None = None  # this run's latest epoch, until a trial records its cost
        self.announced = False

    def epoch_seconds(self) -> float | None:
        """Seconds an epoch of a search trial costs: the study's record, else this run's measure."""
        done = self.study.get_trials(deepcopy=False, states=(STATES.COMPLETE,))
        return finalists.epoch_seconds(done) or self.measured

    def stage_epoch_seconds(self) -> float | None:
        """Seconds an epoch of a finalist run costs: the finalist runs' record, else an estimate."""
        staged = finalists.open_finalists(self.study)
        recorded = None if staged is None else finalists.epoch_seconds(staged.get_trials(deepcopy=False))
        search = self.epoch_seconds()
        return recorded or (None if search is None else search * STAGE_EPOCH_FACTOR)

    def stage_epochs(self) -> list[int]:
        """Epochs of each finalist run still to do; finalists not known yet count the profile's longest."""
        if self.k == 0:
            return []
        plan = finalists.make_plan(self.study, self.k, self.folds, self.seed)
        epochs = finalists.run_epochs(plan, finalists.open_finalists(self.study))
        unknown = (self.k - len(plan["finalists"])) * self.folds
        return epochs + [self.profile.epochs[1]] * unknown

    def required_epochs(self) -> int:
        """Epochs of the queued or running baseline and warm start."""
        trials = self.study.get_trials(deepcopy=False, states=(STATES.WAITING, STATES.RUNNING))
        return sum(planned_params(t).get("epochs", 0) for t in trials if is_required(t))

    def plan(self) -> Plan | None:
        """The plan from now on, or None before the speed is known."""
        per_epoch, per_stage_epoch = self.epoch_seconds(), self.stage_epoch_seconds()
        if per_epoch is None:
            return None
        left = self.deadline - time.monotonic()
        return Plan(per_epoch, left, self.required_epochs(), self.stage_epochs(), per_stage_epoch, self.workers)

    def search_until(self, trial: optuna.Trial | None = None) -> float:
        """When the search stops (for ``trial``, when it must stop): before the finalist reserve.

        The baseline and warm start run to the run's deadline, and no trial is refused a start
        while one of them waits: they are the least search a verdict needs.
        """
        plan = self.plan()
        required = is_required(trial) if trial is not None else bool(plan and plan.required_epochs)
        if plan is None or required:
            return self.deadline
        return self.deadline - plan.stage_seconds

    def on_epoch_seconds(self, seconds: float) -> None:
        """Record a measured epoch; print the plan the first time the speed is known in this run."""
        self.measured = seconds
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
