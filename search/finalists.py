"""The finalist stage: the study's top configurations trained again with fresh training seeds.

One training run is one draw: its seed moves the MAE as much as the search gains. After the
search, the best configuration, the seed baseline's and (``--finalists 3`` or more) runners-up
are trained again with seeds the search never used (the study's ``--seed`` plus 1, 2, ...).
The runs are the trials of a second study in the same storage, ``<name>:finalists``, so they
resume after Ctrl-C or a timeout, run under ``--workers``, show in the dashboard with their
artifacts, and never reach the search's sampler or its best trial. Each finalist is exported as
the ensemble of its runs; :mod:`search.verdict` compares the ensembles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import optuna

from search.artifacts import FOLDER_ATTR
from search.verdict import baseline_trial

STATES = optuna.trial.TrialState
SUFFIX = ":finalists"  # ':' is refused in a user's study name, so no study of theirs can clash
PLAN_ATTR = "plan"  # finalist-study attr: [{"trial": n, "role": ..., "params": {...}, "seeds": [...]}]
SOURCE_ATTR, SEED_ATTR = "finalist_of", "train_seed"  # a run's trial attrs: its configuration's trial, its seed


class NotRun(Exception):
    """Raised for a finalist-study trial with no run to do (a duplicate, or nothing was waiting)."""


def finalist_study_name(study_name: str) -> str:
    return study_name + SUFFIX


def pick_finalists(study: optuna.Study, k: int) -> list[tuple[optuna.trial.FrozenTrial, str]]:
    """The best complete trial, the seed baseline, then the next best other configurations: ``k`` in all.

    Returns ``(trial, role)`` pairs, role ``"best"``, ``"seed baseline"`` (both when the baseline
    is the best) or ``"runner-up"``. A configuration appears once, under its best trial.
    """
    complete = sorted(study.get_trials(deepcopy=False, states=(STATES.COMPLETE,)), key=lambda t: t.value)
    baseline = baseline_trial(study)
    ordered = complete[:1] + ([baseline] if baseline else []) + complete[1:]
    picked, seen = [], []
    for trial in ordered:
        if len(picked) == k:
            break
        if trial.params in seen:
            continue
        seen.append(trial.params)
        roles = [r for r, t in (("best", complete[0]), ("seed baseline", baseline)) if t is trial]
        picked.append((trial, " and ".join(roles) or "runner-up"))
    return picked


def make_plan(study: optuna.Study, k: int, n_seeds: int, study_seed: int) -> list[dict]:
    """What the stage trains: every finalist with seeds ``study_seed + 1 .. study_seed + n_seeds``."""
    seeds = [study_seed + i for i in range(1, n_seeds + 1)]
    return [
        {"trial": t.number, "role": role, "params": t.params, "seeds": seeds} for t, role in pick_finalists(study, k)
    ]


def planned_runs(plan: list[dict]) -> list[tuple[int, int]]:
    """``(trial, seed)`` of every run, seed by seed: a stage cut short still has every finalist's first seeds."""
    n_seeds = max((len(f["seeds"]) for f in plan), default=0)
    return [(f["trial"], f["seeds"][i]) for i in range(n_seeds) for f in plan if i < len(f["seeds"])]


def run_key(trial) -> tuple[int, int] | None:
    """``(trial, seed)`` a finalist-study trial runs, or None for a trial that is no finalist run."""
    attrs = trial.user_attrs
    return (attrs[SOURCE_ATTR], attrs[SEED_ATTR]) if SOURCE_ATTR in attrs else None


def trial_label(trial) -> str:
    """``trial 3`` for a search trial, ``run 5 (trial 3 seed 1)`` for a finalist run."""
    key = run_key(trial)
    return f"trial {trial.number}" if key is None else f"run {trial.number} (trial {key[0]} seed {key[1]})"


def settled(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a run needs no new attempt: done, under way, queued, or diverged (its seed would again)."""
    return trial.state != STATES.FAIL or bool(trial.user_attrs.get("diverged"))


def open_finalists(study: optuna.Study, create: bool = False) -> optuna.Study | None:
    """The finalist study of ``study`` in the same storage (created if asked), or None."""
    name = finalist_study_name(study.study_name)
    storage = study._storage  # the search study's own connection: the same storage, opened once
    if not create:
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            return None
    # Every run's parameters are queued: a sampler never draws one, and no trial is pruned.
    finalists = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(),
        pruner=optuna.pruners.NopPruner(),
        load_if_exists=True,
    )
    finalists.set_user_attr("search_study", study.study_name)
    # Checkpoints in a subfolder of the search's; artifacts in its store (search.artifacts.artifact_dir).
    finalists.set_user_attr(FOLDER_ATTR, f"{study.user_attrs[FOLDER_ATTR]}/finalists")
    return finalists


def queue_missing(finalists: optuna.Study, plan: list[dict]) -> None:
    """Record ``plan`` and queue each of its runs that no trial has settled."""
    finalists.set_user_attr(PLAN_ATTR, plan)
    params = {f["trial"]: f["params"] for f in plan}
    done = {run_key(t) for t in finalists.get_trials(deepcopy=False) if settled(t)}
    for source, seed in planned_runs(plan):
        if (source, seed) not in done:
            finalists.enqueue_trial(params[source], user_attrs={SOURCE_ATTR: source, SEED_ATTR: seed})


def trial_seconds(trial: optuna.trial.FrozenTrial) -> float:
    """What a complete trial cost, training, counting and figures: as its objective measured it."""
    if "trial_seconds" in trial.user_attrs:
        return trial.user_attrs["trial_seconds"]
    return (trial.datetime_complete - trial.datetime_start).total_seconds()  # studies from before that record


def missing_seconds(study: optuna.Study, plan: list[dict], finalists: optuna.Study | None) -> float:
    """Seconds the plan's runs still to do will take: each as long as its configuration's search trial took."""
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(STATES.COMPLETE,))}
    done = set()
    if finalists is not None:
        done = {run_key(t) for t in finalists.get_trials(deepcopy=False, states=(STATES.COMPLETE,))}
    seconds = 0.0
    for source, seed in planned_runs(plan):
        trial = trials.get(source)
        if (source, seed) not in done and trial is not None:
            seconds += trial_seconds(trial)
    return seconds


class FinalistRun:
    """The objective of a finalist run: the search's objective, trained with the run's own seed.

    The search's objective reads the seed from the trial's ``train_seed`` attribute. A trial
    that holds no queued run (two workers popped the last one at once), a run of an earlier
    plan (the best trial changed since it was queued) or a run an earlier trial holds fails at
    once, without training.
    """

    def __init__(self, objective):
        self.objective = objective

    def __call__(self, trial: optuna.Trial) -> float:
        key = run_key(trial)
        if key is None:
            raise self._not_run(trial, "not run: no finalist run was waiting")
        if key not in planned_runs(trial.study.user_attrs.get(PLAN_ATTR, [])):
            raise self._not_run(trial, "not run: its configuration is no longer a finalist")
        for other in trial.study.get_trials(deepcopy=False):
            if other.number < trial.number and run_key(other) == key and settled(other):
                raise self._not_run(trial, f"not run: trial {other.number} already holds this run")
        return self.objective(trial)

    @staticmethod
    def _not_run(trial: optuna.Trial, reason: str) -> NotRun:
        trial.set_user_attr("fail_reason", reason)
        return NotRun(reason)


@dataclass
class Finalist:
    """A finalist configuration and its complete runs, one per training seed, in seed order."""

    trial: int  # the search trial whose configuration it is
    role: str
    params: dict
    seeds: list[int]  # the seeds planned
    runs: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    diverged: list[int] = field(default_factory=list)  # seeds whose run diverged

    @property
    def errors(self) -> np.ndarray:
        """Per-tile validation count errors of its runs, shape (runs, tiles)."""
        return np.array([r.user_attrs["val_errors"] for r in self.runs], dtype=float).reshape(len(self.runs), -1)

    @property
    def run_seeds(self) -> list[int]:
        return [r.user_attrs[SEED_ATTR] for r in self.runs]


def results(study: optuna.Study) -> list[Finalist]:
    """The finalists of the stage's last plan with their complete runs; empty before the stage began."""
    finalists = open_finalists(study)
    if finalists is None:
        return []
    complete, diverged = {}, set()
    for trial in finalists.get_trials(deepcopy=False):
        if trial.state == STATES.COMPLETE:
            complete.setdefault(run_key(trial), trial)
        elif trial.user_attrs.get("diverged"):
            diverged.add(run_key(trial))
    out = []
    for f in finalists.user_attrs.get(PLAN_ATTR, []):
        keys = [(f["trial"], seed) for seed in f["seeds"]]
        out.append(
            Finalist(
                f["trial"],
                f["role"],
                f["params"],
                f["seeds"],
                [complete[k] for k in keys if k in complete],
                [k[1] for k in keys if k in diverged and k not in complete],
            )
        )
    return out
