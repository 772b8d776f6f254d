"""The finalist stage: the study's top configurations judged on images the search never chose on.

The search picks its best trial on the validation images, so judging finalists on those same
images keeps whatever luck picked them. Instead the stage cross-fits over the search's
*training* images: they are dealt, source image by source image, into K folds
(:func:`data.assign_folds`); each finalist is trained K times, each run with its own fresh
seed (the study's ``--seed`` plus 1, 2, ...) on the other folds plus the validation images, and
scored on the fold it held out. Every training-side image thus gets one out-of-fold prediction
from every finalist, and the finalists are compared on those images, paired, plus the spread
between runs (:func:`search.results.stats.compare_folds`). A run records K beside its fold: runs
of another K held out other images, so they are kept but never compared with the plan's.

The runs are the trials of a second study in the same storage, ``<name>:finalists``, so they
resume after Ctrl-C or a timeout, run under ``--workers``, show in the dashboard with their
artifacts, and never reach the search's sampler or its best trial. The export weighs the
finalists' fold and search models on their out-of-fold counts (:mod:`search.results.blend`).
"""

from __future__ import annotations

import numpy as np
import optuna

from search import space
from search.results.verdict import Finalist
from search.roles import (
    EARLIER,
    FOLD_ATTR,
    FOLDER_ATTR,
    FOLDS_ATTR,
    REFERENCE_ROLE,
    SEED_ATTR,
    SOURCE_ATTR,
    baseline_trial,
    run_key,
)

STATES = optuna.trial.TrialState
SUFFIX = ":finalists"  # ':' is refused in a user's study name, so no study of theirs can clash
# Finalist-study attr: {"folds": K, "seeds": [...], "finalists": [{"trial": n, "role": ..., "params": {...}}]}.
# K names the partition: a plan of another K is a new plan, whose runs never meet the old plan's.
# Studies from before cross-fitting kept a "plan" of seed runs on the validation images: it is not read.
PLAN_ATTR = "fold_plan"
CENTRE_ROLE = "best centre target"  # a finalist kept for training from cell centres (pick_finalists)
MAX_FINALISTS = 10  # each costs a run per fold: more is a second search, not a final check
MAX_FOLDS = 10  # more folds train more runs on ever larger shares of the data: no longer cheaper to judge


class NotRun(Exception):
    """Raised for a finalist-study trial with no run to do (a duplicate, or nothing was waiting)."""


def finalist_study_name(study_name: str) -> str:
    return study_name + SUFFIX


def pick_finalists(study: optuna.Study, k: int) -> list[tuple[optuna.trial.FrozenTrial, str]]:
    """The best complete trial, the reference, then the next best other configurations: ``k`` in all.

    Returns ``(trial, role)`` pairs, role ``"best"``, ``"reference"`` (both when the baseline
    is the best) or ``"runner-up"``. A configuration appears once, under its best trial. When
    trials train from masks and from cell centres both, and none picked from centres, the best
    centre-target trial (``CENTRE_ROLE``) takes the last runner-up's place or is added: validation
    and held-out images disagreed on the two, so the out-of-fold stage judges them.
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
        roles = [r for r, t in (("best", complete[0]), (REFERENCE_ROLE, baseline)) if t is trial]
        picked.append((trial, " and ".join(roles) or "runner-up"))
    return with_centre_target(picked, complete)


def with_centre_target(picked: list, complete: list) -> list:
    """``picked`` with the best centre-target trial among them, when the trials train from both kinds."""
    centres = [t for t in complete if space.trains_from_centres(t.params)]
    mixed = len(centres) not in (0, len(complete))
    if not picked or not mixed or any(space.trains_from_centres(t.params) for t, _ in picked):
        return picked
    if picked[-1][1] == "runner-up":
        picked = picked[:-1]
    return [*picked, (centres[0], CENTRE_ROLE)]


def make_plan(study: optuna.Study, k: int, n_folds: int, study_seed: int) -> dict:
    """What the stage trains: every finalist once per fold, fold ``i`` with seed ``study_seed + 1 + i``."""
    return {
        "folds": n_folds,
        "seeds": [study_seed + 1 + i for i in range(n_folds)],
        "finalists": [{"trial": t.number, "role": role, "params": t.params} for t, role in pick_finalists(study, k)],
    }


def planned_runs(plan: dict) -> list[tuple[int, int, int]]:
    """``(trial, fold, folds)`` of every run, fold by fold: a stage cut short compares finalists on the same folds."""
    n_folds = plan.get("folds", 0)
    return [(f["trial"], fold, n_folds) for fold in range(n_folds) for f in plan.get("finalists", [])]


def settled(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a run needs no new attempt: done, under way, queued, or diverged (its seed would again)."""
    return trial.state != STATES.FAIL or bool(trial.user_attrs.get("diverged"))


def stage_folder(study: optuna.Study) -> str:
    """The finalist study's folder: inside its search study's, so each search has its own."""
    return f"{study.user_attrs[FOLDER_ATTR]}/finalists"


def open_finalists(study: optuna.Study, create: bool = False) -> optuna.Study | None:
    """The finalist study of ``study`` in the same storage (created if asked), or None.

    A finalist study left by an earlier study of the same name (deleted and created again)
    belongs to another folder: it is not this study's, and :func:`drop_stale` removes it.
    """
    name = finalist_study_name(study.study_name)
    storage = study._storage  # the search study's own connection: the same storage, opened once
    if not create:
        try:
            staged = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            return None
        return staged if staged.user_attrs.get(FOLDER_ATTR) == stage_folder(study) else None
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
    # Checkpoints in a subfolder of the search's; artifacts in its store (search.runtime.artifacts.artifact_dir).
    finalists.set_user_attr(FOLDER_ATTR, stage_folder(study))
    return finalists


def drop_stale(study: optuna.Study) -> str | None:
    """Delete a finalist study that an earlier study of this name left behind; says so, or None.

    Its runs were trained for another search (perhaps on another file): they must not appear
    in this study's verdict or export.
    """
    name = finalist_study_name(study.study_name)
    try:
        staged = optuna.load_study(study_name=name, storage=study._storage)
    except KeyError:
        return None
    folder = staged.user_attrs.get(FOLDER_ATTR)
    if folder == stage_folder(study):
        return None
    optuna.delete_study(study_name=name, storage=study._storage)
    return f"deleted the finalist study {name!r} of an earlier study of this name ({folder})"


def queue_plan(finalists: optuna.Study, plan: dict, claim) -> None:
    """Record ``plan`` and leave exactly its runs still to do waiting, in plan order.

    Waiting runs out of plan order (a run queued again after Ctrl-C or a timeout goes to the
    back) and runs of an earlier plan are taken off the queue in one pass: ``claim(trial)``
    takes a waiting trial as a worker starting it would (False when another worker did
    first), and the trial is failed as "not run". The missing runs are then queued in order.
    """
    finalists.set_user_attr(PLAN_ATTR, plan)
    trials = finalists.get_trials(deepcopy=False)
    done = {run_key(t) for t in trials if settled(t) and t.state != STATES.WAITING}
    missing = [key for key in planned_runs(plan) if key not in done]
    waiting = [t for t in trials if t.state == STATES.WAITING]
    if [run_key(t) for t in waiting] == missing:
        return
    for trial in waiting:
        if claim(trial):
            finalists._storage.set_trial_user_attr(
                trial._trial_id, "fail_reason", "not run: queued again in plan order"
            )
            finalists._storage.set_trial_state_values(trial._trial_id, STATES.FAIL)
    params = {f["trial"]: f["params"] for f in plan["finalists"]}
    for source, fold, n_folds in missing:
        attrs = {SOURCE_ATTR: source, FOLD_ATTR: fold, FOLDS_ATTR: n_folds, SEED_ATTR: plan["seeds"][fold]}
        finalists.enqueue_trial(params[source], user_attrs=attrs)


def stage_plan(finalists: optuna.Study | None) -> dict | None:
    """The plan the finalist study last recorded, or None."""
    return None if finalists is None else finalists.user_attrs.get(PLAN_ATTR)


def missing_runs(plan: dict, finalists: optuna.Study | None) -> list[tuple[int, int, int]]:
    """The plan's runs with no complete or diverged trial, in plan order."""
    done = set()
    if finalists is not None:
        done = {run_key(t) for t in finalists.get_trials(deepcopy=False) if t.state == STATES.COMPLETE}
        done |= {run_key(t) for t in finalists.get_trials(deepcopy=False) if t.user_attrs.get("diverged")}
    return [key for key in planned_runs(plan) if key not in done]


def resumable(plan: dict, finalists: optuna.Study, n_folds: int) -> bool:
    """Whether a recorded plan is resumed: runs left to do, of this run's ``n_folds``.

    A plan of another partition (a new ``--folds``) is not: its runs would never be compared
    with those of the new plan, made when the search ends.
    """
    return plan["folds"] == n_folds and bool(missing_runs(plan, finalists))


def other_partitions(plan: dict, finalists: optuna.Study) -> str:
    """``" (4 runs of a 2-fold partition kept, never compared with these)"``, or "" when none are kept."""
    keys = [run_key(t) for t in finalists.get_trials(deepcopy=False, states=(STATES.COMPLETE,))]
    kept = [key for key in keys if key is not None and key[2] != plan["folds"]]
    if not kept:
        return ""
    sizes = sorted({"an unrecorded" if k[2] is None else f"a {k[2]}-fold" for k in kept})
    return f" ({len(kept)} runs of {' and '.join(sizes)} partition kept, never compared with these)"


class FinalistRun:
    """The objective of a finalist run: the search's objective on the run's fold, with the run's seed.

    ``objective_for(fold)`` gives the objective of the split that holds fold ``fold`` out; it
    reads the seed from the trial's ``train_seed`` attribute. A trial that holds no queued run
    (two workers popped the last one at once), a run of an earlier plan, or a run an earlier
    trial holds fails at once, without training.
    """

    def __init__(self, objective_for):
        self.objective_for = objective_for

    def __call__(self, trial: optuna.Trial) -> float:
        key = run_key(trial)
        if key is None:
            raise self._not_run(trial, "not run: no finalist run was waiting")
        if key not in planned_runs(trial.study.user_attrs.get(PLAN_ATTR, {})):
            raise self._not_run(trial, "not run: no longer in the finalist plan (its configuration or --folds changed)")
        for other in trial.study.get_trials(deepcopy=False):
            if other.number < trial.number and run_key(other) == key and settled(other):
                raise self._not_run(trial, f"not run: trial {other.number} already holds this run")
        return self.objective_for(key[1])(trial)

    @staticmethod
    def _not_run(trial: optuna.Trial, reason: str) -> NotRun:
        trial.set_user_attr("fail_reason", reason)
        return NotRun(reason)


def results(study: optuna.Study) -> list[Finalist]:
    """The finalists of the stage's plan, then earlier finalists with runs, with their complete runs.

    Only runs of the plan's partition count: runs of another ``--folds`` held out other images.
    A configuration whose runs of this partition finished under an earlier plan (the search's
    best changed since, or fewer finalists are planned) keeps them: it is listed as an
    ``"earlier finalist"`` and can still win. Empty before the stage began.
    """
    staged = open_finalists(study)
    plan = stage_plan(staged)
    if plan is None:
        return []
    complete, diverged = {}, set()
    for trial in staged.get_trials(deepcopy=False):
        key = run_key(trial)
        if key is None or key[2] != plan["folds"]:
            continue
        if trial.state == STATES.COMPLETE:
            complete.setdefault(key[:2], trial)
        elif trial.user_attrs.get("diverged"):
            diverged.add(key[:2])
    listed = [(f["trial"], f["role"], f["params"]) for f in plan["finalists"]]
    planned = {f["trial"] for f in plan["finalists"]}
    for source, _ in sorted(complete):
        if source not in planned:
            planned.add(source)
            listed.append((source, EARLIER, complete[next(k for k in complete if k[0] == source)].params))
    out = []
    for source, role, params in listed:
        runs = {k: complete[(source, k)] for k in range(plan["folds"]) if (source, k) in complete}
        gone = [k for k in range(plan["folds"]) if (source, k) in diverged and k not in runs]
        out.append(Finalist(source, role, params, plan["folds"], runs, gone))
    return out


# --- cost ------------------------------------------------------------------------------------------


def epoch_seconds(trials: list[optuna.trial.FrozenTrial]) -> float | None:
    """The median cost of one epoch over ``trials`` that recorded it (training, scoring, figures), or None."""
    seen = [t.user_attrs["epoch_seconds"] for t in trials if t.user_attrs.get("epoch_seconds")]
    return float(np.median(seen)) if seen else None


def run_epochs(plan: dict, finalists: optuna.Study | None) -> list[int]:
    """Epochs of each of the plan's runs still to do, in plan order: as many as its configuration's search trial."""
    epochs = {f["trial"]: f["params"]["epochs"] for f in plan.get("finalists", [])}
    return [epochs[source] for source, _, _ in missing_runs(plan, finalists)]
