"""Run or resume an Optuna study for the best cell-counting U-Net.

    python -m search.study                          # quick study on the embedded data
    python -m search.study --profile full --n-trials 40 --train train_data.npz

Each trial trains a U-Net, reports its validation count-MAE after every epoch (weak trials
are pruned), chooses its counting setting on the validation predictions of its last epoch
and keeps its checkpoint under ``studies/<name>-<id>/``. Validation tiles come from other
source images than training tiles. The same command resumes an interrupted study.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import torch

import data
from model.device import resolve_precision
from search import cli, space
from search.errors import UsageError
from search.results import stats
from search.results.note import StudyNote
from search.results.verdict import finalist_lines, gain_line, safe_choice, stage_verdict
from search.roles import baseline_trial, is_baseline, reference_counting_mae, run_key, trial_label
from search.runtime import workers
from search.runtime.artifacts import artifact_dir, record_project, study_dir
from search.runtime.storage import (
    check_study_name,
    dashboard_target,
    default_url,
    given_storage,
    is_sqlite,
    open_storage,
)
from search.stages import finalists, prepare
from search.stages.budget import Budget
from search.stages.objective import NoTime, Objective, QuietFailures, StudyTimeout, fold_split, study_split

FINISHED = workers.FINISHED  # complete or pruned: what counts towards --n-trials
# One instance: adding it again on every run is then a no-op. Ctrl-C's one line is run_command's.
QUIET = QuietFailures((StudyTimeout, NoTime, finalists.NotRun, workers.SurplusTrial, KeyboardInterrupt))


def add_worker_options(p: argparse._ArgumentGroup) -> None:
    """Options for several processes and machines sharing a study."""
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes running trials at once on this machine: one GPU each when several "
        "are visible, else the CPU cores split between them (default: %(default)s)",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        help="seconds between a running trial's heartbeats on a database storage; a trial "
        "silent for twice as long (its worker died) is failed and run again (default: %(default)s)",
    )
    # Set by --workers on the processes it starts: which worker this is.
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)


def add_scoring_options(p: argparse._ArgumentGroup) -> None:
    """Options for how trials are scored: the counting objective and the split."""
    p.add_argument(
        "--objective",
        choices=("tuned", "sampled"),
        default="tuned",
        help="tuned: choose each trial's counting setting on validation after training "
        "and score it out of sample (chosen on half of the validation images, scored on "
        "the other half, both ways round); sampled: sample the counting setting as "
        "parameters (default: %(default)s)",
    )
    p.add_argument(
        "--split",
        choices=("image", "tile"),
        default="image",
        help="image: no source image on both sides of the train/validation split (its "
        "'groups' array, else tiles linked by shared rows or columns of pixels); tile: "
        "a per-tile split, which lets validation reward memorising (default: %(default)s)",
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.parser(
        "python -m search.study",
        "Run or resume an Optuna study that searches U-Net training and cell-counting settings; "
        "objective: validation count-MAE (lower is better).",
        "sqlite:///studies/<name>.db; journal:///studies/<name>.journal.log with --workers above 1",
    )
    add_search_options(p.add_argument_group("search"))
    add_scoring_options(p.add_argument_group("scoring"))
    add_finalist_options(p.add_argument_group("finalist stage"))
    add_worker_options(p.add_argument_group("parallel workers"))
    return p.parse_args(argv)


def add_search_options(p: argparse._ArgumentGroup) -> None:
    """Options for the search: its data, length, profile, pruner, sampler and seed."""
    p.add_argument(
        "--train",
        type=Path,
        default=data.DEFAULT_TRAIN,
        help="training npz with X and either y (soft masks) or points (dots, one per cell; see "
        "python -m data.importer) (default: the embedded DSB2018-fluo tiles)",
    )
    p.add_argument(
        "--n-trials",
        type=int,
        help="finished trials the study should reach, counting earlier runs (default: the profile's)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds for this run, search and finalists together: the search stops when the finalist "
        "runs still to do would take the rest, and a trial still running at the end is stopped "
        "(default: the profile's: quick 1080, full 14400)",
    )
    p.add_argument(
        "--profile",
        choices=sorted(space.PROFILES),
        help="full: the reference write-up's full-size net, for a GPU; quick: a small net for "
        "CPUs (default: full on CUDA, quick otherwise)",
    )
    p.add_argument(
        "--pruner",
        choices=("median", "hyperband", "none"),
        default="median",
        help="how weak trials are stopped early (default: %(default)s)",
    )
    p.add_argument(
        "--sampler", choices=("tpe", "random"), default="tpe", help="how parameters are sampled (default: %(default)s)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seeds the split, the sampler and every trial's training (default: 0)"
    )


def add_finalist_options(p: argparse._ArgumentGroup) -> None:
    """Options for the finalist stage: how many configurations are judged out of fold, over how many folds."""
    p.add_argument(
        "--finalists",
        type=int,
        help="configurations judged out of fold after the search: the best, the reference, then "
        "runners-up; 0 skips the stage (default: the profile's: quick 2, full 3)",
    )
    p.add_argument(
        "--folds",
        type=int,
        help=f"folds of the training images, 2..{finalists.MAX_FOLDS}: each finalist is trained once per fold, "
        "with a fresh seed, on the other folds and the validation images, and scored on the fold it held out "
        "(default: the profile's: quick 2, full 3)",
    )


def stage_size(args, profile: space.Profile) -> tuple[int, int]:
    """Finalists and folds of this run: the options, else the profile's."""
    k = profile.finalists if args.finalists is None else args.finalists
    return k, profile.folds if args.folds is None else args.folds


class StopAfterFailures:
    """Stop the run once ``limit`` trials failed in it: a broken setup must not loop until the timeout."""

    def __init__(self, limit: int):
        self.limit, self.failed = limit, 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.failed += trial.state == optuna.trial.TrialState.FAIL
        if self.failed >= self.limit:
            print(f"stopping: {self.failed} trials failed in this run", flush=True)
            study.stop()


def se_text(attrs: dict) -> str:
    """A trial's standard error for printing: n/a when too few validation images gave none."""
    return "n/a" if attrs.get("value_se") is None else f"{attrs['value_se']:.3f}"


def print_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One line per finished trial or finalist run."""
    a = trial.user_attrs
    tag = f"{trial_label(trial)}{' (reference)' if is_baseline(trial) else ''}"
    if trial.state == optuna.trial.TrialState.COMPLETE:
        best = f"; best so far: trial {study.best_trial.number} ({study.best_value:.3f})"
        best = "" if run_key(trial) else best  # a finalist run is no search trial
        print(
            f"{tag} finished: val MAE {trial.value:.3f} +- {se_text(a)} with "
            f"{a['counting_name']} ({a['train_seconds']:.0f} s){best}",
            flush=True,
        )
    elif trial.state == optuna.trial.TrialState.PRUNED:
        steps = trial.intermediate_values
        last = f" at epoch {max(steps)} (val MAE {steps[max(steps)]:.3f})" if steps else ""
        why = a.get("stopped", "pruned")
        print(f"{tag} {why}{last}", flush=True)
    else:
        reason = a.get("fail_reason", "see the log above")
        print(f"{tag} {trial.state.name.lower()}: {reason}", flush=True)


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
    study, profile = prepare.prepare_study(args, storage, split.annotation, device)
    record_project(study, storage_url)  # the export finds the checkpoints from any folder
    note = describe_split(study, args, split, source, rule, profile)
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
    )
    # A resumed study trains the finalist runs it left queued before any new search trial.
    if finalists.stage_plan(finalists.open_finalists(study)) is not None:
        run_finalists(study, args, profile, split, note, budget, device, resumed=True)
    run_trials(study, args, profile, objective, n_trials, storage_url, note, budget.search_until)
    run_finalists(study, args, profile, split, note, budget, device)
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
    budget = Budget(study, profile, k, n_folds, args.seed, args.workers, timeout)
    print(
        f"budget {timeout:.0f} s: the search, then {k} finalists x {n_folds} folds, "
        "the finalist stage reserved first at its measured cost"
        if k
        else f"budget {timeout:.0f} s for the search (no finalist stage)",
        flush=True,
    )
    if resolve_precision("auto", device) == "fp32" and device.type == "cpu":
        print(
            "this CPU has no native bf16: training runs in fp32, several times slower than on one that has; "
            "the plan after the first epoch says how much of the search and finalist stage fits",
            flush=True,
        )
    if not budget.announce():
        print("the plan follows once the first epoch has shown the speed", flush=True)
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


def run_finalists(study, args, profile, split, note: StudyNote, budget: Budget, device, resumed: bool = False) -> None:
    """The finalist stage: each finalist trained once per fold, until every run is done or the deadline.

    ``resumed``: train the runs of the plan the study recorded (left queued by an earlier run)
    rather than a new plan.
    """
    k, n_folds = stage_size(args, profile)
    if k == 0:
        return
    workers.wait_until_idle(study, budget.deadline)  # every worker then plans the same finalists
    staged = finalists.open_finalists(study, create=True)
    plan = finalists.stage_plan(staged) if resumed else finalists.make_plan(study, k, n_folds, args.seed)
    if not plan or not plan["finalists"] or (resumed and not finalists.missing_runs(plan, staged)):
        return
    finalists.queue_plan(staged, plan, lambda trial: workers.claim(staged, trial))
    runs = finalists.planned_runs(plan)
    done = len(runs) - len(finalists.missing_runs(plan, staged))
    names = ", ".join(f"trial {f['trial']} ({f['role']})" for f in plan["finalists"])
    first = "resuming the finalist stage first" if resumed else "finalists"
    print(
        f"{first}: {names}; {plan['folds']} folds, seeds {plan['seeds']}: {done} of {len(runs)} runs done", flush=True
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
                budget.on_epoch_seconds,
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


def no_complete_hint(study: optuna.Study, target: int) -> str:
    """What to do about a study with no complete trial; never "run again" when that would do nothing."""
    if len(study.get_trials(deepcopy=False, states=FINISHED)) >= target:
        return f"all {target} finished trials were pruned: raise --n-trials to run more"
    if any(t.user_attrs.get("stopped") for t in study.get_trials(deepcopy=False)):
        return (
            "the timeout stopped a trial before its last epoch and queued it again: run the same command "
            "to continue, with a longer --timeout if one trial needs more time than that"
        )
    return "run the same command again to continue"


def summarize(study: optuna.Study, storage_url: str, target: int) -> None:
    """The best trial beside the baseline, the finalists' verdict over seeds, and how to browse and export."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        print(f"no finished trial yet: {no_complete_hint(study, target)}", flush=True)
        return
    best = study.best_trial
    print(
        f"\nbest trial {best.number}: val MAE {best.value:.3f} +- {se_text(best.user_attrs)} "
        f"(standard error over validation images) with {best.user_attrs['counting_name']}; params {best.params}"
    )
    baseline = baseline_trial(study)
    if baseline is not None:
        print(
            f"reference (trial {baseline.number}): val MAE {baseline.value:.3f} as scored by the study, "
            f"{reference_counting_mae(baseline):.3f} with the reference counting "
            f"({space.setting_name(space.REFERENCE_COUNTING)})"
        )
    print(f"search: {gain_line(study)}")
    staged = finalists.results(study)
    if staged:
        print("\n" + "\n".join(finalist_lines(staged, study)) + "\n")
    print(
        f"browse: optuna-dashboard {dashboard_target(storage_url)} "
        f"--artifact-dir {artifact_dir(study)} --host 127.0.0.1"
    )
    export = f"python -m search.export --study-name {study.study_name}" + (
        f" --storage {dashboard_target(storage_url)}" if storage_url != default_url(study.study_name) else ""
    )
    v = stage_verdict(staged)
    what = f"trial {best.number} alone" if v is None else f"trial {v.winner.trial}'s search and fold models"
    print(f"export: {export}   ({what})", flush=True)
    safe = safe_choice(study, v)
    if safe is not None:
        print(f"export the safe choice, {safe[0]}: {export} {safe[1]}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run_command(
        lambda: run(args, sys.argv[1:] if argv is None else argv),
        "interrupted: finished trials are saved; run the same command to resume",
    )


if __name__ == "__main__":
    sys.exit(main())
