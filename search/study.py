"""Run or resume an Optuna study for the best cell-counting U-Net.

    python -m search.study                          # quick study on the embedded data
    python -m search.study --profile full --n-trials 40 --train train_data.npz

Each trial trains a U-Net, reports its validation count-MAE after every epoch (weak trials
are pruned), chooses its counting setting on the validation predictions of its last epoch
and keeps its checkpoint under ``studies/<name>-<id>/``. Validation tiles come from other
source images than training tiles. The same command resumes an interrupted study.

This module holds the run loop; the options are :mod:`search.study_options`'s, the lines
printed for each trial and at the end :mod:`search.summary`'s.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from dataclasses import replace

import numpy as np
import optuna
import torch

import data
from model.device import resolve_precision
from search import cli, space
from search.errors import UsageError
from search.results import stats
from search.results.note import StudyNote
from search.roles import is_baseline
from search.runtime import dead_workers, workers
from search.runtime.artifacts import record_project, states_dir, study_dir
from search.runtime.storage import check_study_name, default_url, given_storage, is_sqlite, open_storage
from search.stages import finalists, prepare
from search.stages.budget import Budget
from search.stages.objective import Objective, fold_split, study_split
from search.stages.runs import NoTime, QuietFailures, StudyTimeout
from search.study_options import parse_args, stage_size
from search.summary import print_trial, summarize

FINISHED = workers.FINISHED  # complete or pruned: what counts towards --n-trials
# One instance: adding it again on every run is then a no-op. Ctrl-C's one line is run_command's.
QUIET = QuietFailures((StudyTimeout, NoTime, finalists.NotRun, workers.SurplusTrial, KeyboardInterrupt))


class StopAfterFailures:
    """Stop the run once ``limit`` trials failed in it: a broken setup must not loop until the timeout."""

    def __init__(self, limit: int):
        self.limit, self.failed = limit, 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.failed += trial.state == optuna.trial.TrialState.FAIL
        if self.failed >= self.limit:
            print(f"stopping: {self.failed} trials failed in this run", flush=True)
            study.stop()


def run(args, argv=()) -> optuna.Study:
    """Run the study in this process, or with ``--workers`` above 1 in that many child processes."""
    prepare.check_args(args)
    check_study_name(args.study_name)
    device = cli.resolve_device(args.device)  # an unknown or absent device is refused before anything is written
    # The data is checked before anything is written: a bad file must not create the study.
    split, source, rule = study_split(args.train, args.seed, prepare.VAL_FRACTION, args.split)
    quiet_optuna()
    storage_url = storage_url_of(args)
    storage = open_storage(storage_url, heartbeat=args.heartbeat)
    share = data.crowding(split.train_points, space.merge_distance()) if split.annotation in space.TARGETS else None
    crowded = share is not None and space.is_crowded(share)
    study, profile = prepare.prepare_study(args, storage, split.annotation, device, crowded)
    split, share = masks_alone(study, split, share)
    record_project(study, storage_url)  # the export finds the checkpoints from any folder
    note = describe_split(study, args, split, source, rule, profile)
    if share is not None:
        print(crowding_line(share), flush=True)
        study.set_user_attr("dots_crowding", round(share, 4))
    n_trials = args.n_trials or profile.n_trials
    if args.workers > 1 and args.worker_index is None:
        workers.spawn_and_wait(list(argv), args.workers, storage_url)
        summarize(study, storage_url, n_trials)
        return study
    if args.worker_index is not None:
        torch.set_num_threads(workers.worker_threads(args.workers))

    budget = plan_budget(study, args, profile, device)
    objective = Objective(
        split,
        profile,
        device,
        args.seed,
        args.objective,
        study_dir(study),
        budget.search_until,
        budget.epoch_seconds,
        budget.on_epoch_seconds,
        states_dir(study, storage_url),
    )
    # A resumed study trains the finalist runs it left queued before any new search trial.
    if finalists.stage_plan(finalists.open_finalists(study)) is not None:
        run_finalists(study, args, profile, split, note, budget, device, storage_url, resumed=True)
    run_trials(study, args, profile, objective, n_trials, storage_url, note, budget.search_until)
    run_finalists(study, args, profile, split, note, budget, device, storage_url)
    if args.worker_index is None:  # the parent of several workers summarizes once for all
        summarize(study, storage_url, n_trials)
    return study


def quiet_optuna() -> None:
    """Optuna's own logging down to what this command does not say itself."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Optuna reports a failed trial in a traceback and a second line; print_trial says it in one.
    logging.getLogger("optuna.study._optimize").addFilter(QUIET)
    # set_metric_names and the grouped TPE are marked experimental; the notice is noise here.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def storage_url_of(args) -> str:
    """The storage URL of this run: ``--storage``, the environment's, else a file under studies/."""
    url = given_storage(args.storage) or default_url(args.study_name, args.workers)
    if args.workers > 1 and is_sqlite(url):
        raise UsageError(
            "--workers above 1 cannot share SQLite (it locks under concurrent writers): omit "
            "--storage for a journal file, or give journal:///FILE.log or a postgresql:// URL"
        )
    return url


def masks_alone(study: optuna.Study, split: data.Split, share: float | None) -> tuple[data.Split, float | None]:
    """``split`` and its crowding as ``study`` trains them: without centres for a study created from masks alone."""
    if prepare.study_annotation(study) != "masks" or split.train_points is None:
        return split, share
    print(
        f"study {study.study_name!r} was created to train from masks alone and goes on so; a new "
        "--study-name also searches targets drawn at this file's cell centres",
        flush=True,
    )
    return replace(split, train_points=None, val_points=None), None


def crowding_line(share: float) -> str:
    """How crowded a file's training centres (dots) are, and what a new study's warm start trains for it."""
    target = (
        f"crowded (over {space.CROWDED_SHARE:.0%}): a new study's warm start trains density maps "
        f"(sigma {space.DEFAULT_SIGMA:g} px)"
        if space.is_crowded(share)
        else f"not crowded (at most {space.CROWDED_SHARE:.0%}): a new study's warm start trains disks"
    )
    return (
        f"centres: {share:.1%} of the training centres (dots) have a neighbour closer than "
        f"{space.merge_distance()} px, where disks of radius {space.DEFAULT_RADIUS} px merge; {target}"
    )


def describe_split(study: optuna.Study, args, split, source: str, rule: str, profile: space.Profile) -> StudyNote:
    """Print the data and its split, record the validation images, and write the study's note."""
    trains_from = space.annotation_text(split.annotation)
    print(
        f"data: {args.train}: {len(split.train_images)} training, "
        f"{len(split.val_images)} validation tiles (seed {args.seed}); true counts: {source}",
        flush=True,
    )
    print(f"trains from {trains_from}", flush=True)
    print(f"split {rule}; {len(np.unique(split.val_groups))} images in validation", flush=True)
    thin = stats.too_few(len(np.unique(split.val_groups)))
    if thin:
        print(f"warning: {thin}: trial values get no standard error and verdicts no interval", flush=True)
    # The summary and the report compare trials image by image: they need the validation images.
    study.set_user_attr("split_rule", rule)
    study.set_user_attr("val_groups", [int(g) for g in split.val_groups])
    note = StudyNote(
        len(split.train_images), len(split.val_images), source, rule, profile, trains_from, finalists.results
    )
    note.ensure(study)
    return note


def plan_budget(study: optuna.Study, args, profile: space.Profile, device) -> Budget:
    """This run's budget; prints it, a warning on a CPU without bf16, and the plan once the speed is known."""
    k, n_folds = stage_size(args, profile)
    timeout = args.timeout or profile.timeout
    budget = Budget(study, profile, k, n_folds, args.seed, args.workers, timeout, finish=args.timeout is None)
    extra = " (one more if none trains from the centres)" if prepare.study_annotation(study) == "masks+dots" else ""
    stage = f"then {k} finalists{extra} x {n_folds} folds, the finalist stage reserved first"
    stage = stage if k else "(no finalist stage)"
    ends = (
        "the reference, warm start and finalist runs go on to the end if this machine needs longer"
        if budget.finish
        else "every run stops at --timeout and the same command continues it from its last epoch"
    )
    print(f"budget {timeout:.0f} s: the search, {stage}; {ends}", flush=True)
    if resolve_precision("auto", device) == "fp32" and device.type == "cpu":
        print(
            "this CPU has no native bf16: training runs in fp32, several times slower than on one that has",
            flush=True,
        )
    print("the plan follows once the first epoch has shown this machine's speed", flush=True)
    return budget


def run_trials(study, args, profile, objective, n_trials: int, storage_url: str, note: StudyNote, deadline) -> None:
    """Run trials in this process until the study has ``n_trials`` finished ones or ``deadline()`` has passed."""
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    if done < n_trials and time.monotonic() < deadline():
        seed = prepare.sampler_seed(study, args.seed, args.worker_index, storage_url)
        study.sampler = prepare.make_sampler(args.sampler, seed)
        study.pruner = prepare.make_pruner(args.pruner, profile)
        print(f"running up to {n_trials - done} trials (study target {n_trials})", flush=True)
        # Failed trials (diverged, crashed) don't count towards the target: stop on finished ones.
        failures = StopAfterFailures(n_trials)
        # No trial starts once the objective's deadline has passed: it would be stopped at once.
        workers.run_until_target(
            study,
            objective,
            n_trials,
            deadline,
            catch=(FloatingPointError, StudyTimeout, NoTime),
            callbacks=[print_trial, failures, note],
            should_stop=lambda: failures.failed >= failures.limit or objective.out_of_time,
            first=is_baseline,  # the study's summary compares every trial with it
        )
        if objective.out_of_time:
            print("search ended: the next trial would not finish before the finalist reserve", flush=True)


def run_finalists(
    study, args, profile, split, note: StudyNote, budget: Budget, device, storage_url: str, resumed: bool = False
) -> None:
    """The finalist stage: each finalist trained once per fold, until every run is done or the deadline.

    ``resumed``: train the runs of the plan the study recorded (left queued by an earlier run)
    rather than a new plan.
    """
    k, n_folds = stage_size(args, profile)
    if k == 0:
        return
    workers.wait_until_idle(study, budget.deadline)  # every worker then plans the same finalists
    staged = finalists.open_finalists(study, create=True)
    dead_workers.fail_stale(staged)  # a killed run is queued again before the plan orders the queue
    plan = finalists.stage_plan(staged) if resumed else finalists.make_plan(study, k, n_folds, args.seed)
    if not plan or not plan["finalists"] or (resumed and not finalists.resumable(plan, staged, n_folds)):
        return
    finalists.queue_plan(staged, plan, lambda trial: workers.claim(staged, trial))
    runs = finalists.planned_runs(plan)
    done = len(runs) - len(finalists.missing_runs(plan, staged))
    names = ", ".join(f"trial {f['trial']} ({f['role']})" for f in plan["finalists"])
    first = "resuming the finalist stage first" if resumed else "finalists"
    kept = finalists.other_partitions(plan, staged)
    print(
        f"{first}: {names}; {plan['folds']} folds, seeds {plan['seeds']}: {done} of {len(runs)} runs done{kept}",
        flush=True,
    )
    folds = data.assign_folds(split.train_groups, plan["folds"], args.seed)
    objectives = {}

    def objective_for(fold: int) -> Objective:
        if fold not in objectives:
            objectives[fold] = Objective(
                fold_split(split, folds, fold),
                space.fold_profile(profile, len(split.train_images)),
                device,
                args.seed,
                args.objective,
                study_dir(staged),
                lambda trial: budget.deadline,
                budget.stage_epoch_seconds,
                budget.on_stage_epoch_seconds,
                states_dir(study, storage_url, staged),
            )
        return objectives[fold]

    workers.run_queue(
        staged,
        finalists.FinalistRun(objective_for),
        budget.deadline,
        catch=(FloatingPointError, StudyTimeout, finalists.NotRun, NoTime),
        callbacks=[print_trial, lambda _, trial: note.write(study) if trial.state.is_finished() else None],
        should_stop=lambda: any(o.out_of_time for o in objectives.values()),
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run_command(
        lambda: run(args, sys.argv[1:] if argv is None else argv),
        "interrupted: finished trials and epochs are saved; run the same command to resume",
    )


if __name__ == "__main__":
    sys.exit(main())
