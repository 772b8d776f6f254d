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
from search import cli, prepare, space, workers
from search.artifacts import StudyNote, artifact_dir, study_dir
from search.errors import UsageError
from search.objective import QUIET_TIMEOUT, Objective, StudyTimeout, study_split
from search.storage import check_study_name, dashboard_target, default_url, given_storage, is_sqlite, open_storage
from search.verdict import baseline_trial, gain, gain_line

FINISHED = workers.FINISHED  # complete or pruned: what counts towards --n-trials


def add_worker_options(p: argparse.ArgumentParser) -> None:
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


def add_scoring_options(p: argparse.ArgumentParser) -> None:
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
    add_worker_options(p)
    p.add_argument(
        "--train",
        type=Path,
        default=data.DEFAULT_TRAIN,
        help="training npz with X and y (default: the embedded DSB2018-fluo tiles)",
    )
    p.add_argument(
        "--n-trials",
        type=int,
        help="finished trials the study should reach, counting earlier runs (default: the profile's)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds for this run; a trial still running then is stopped "
        "(default: the profile's: quick 1080, full 14400)",
    )
    p.add_argument(
        "--profile",
        choices=sorted(space.PROFILES),
        help="full: the seed write-up's full-size net, for a GPU; quick: a small net for "
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
    add_scoring_options(p)
    return p.parse_args(argv)


class StopAfterFailures:
    """Stop the run once ``limit`` trials failed in it: a broken setup must not loop until the timeout."""

    def __init__(self, limit: int):
        self.limit, self.failed = limit, 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.failed += trial.state == optuna.trial.TrialState.FAIL
        if self.failed >= self.limit:
            print(f"stopping: {self.failed} trials failed in this run", flush=True)
            study.stop()


def print_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One line per finished trial."""
    a = trial.user_attrs
    tag = " (seed baseline)" if a.get("baseline") else ""
    if trial.state == optuna.trial.TrialState.COMPLETE:
        print(
            f"trial {trial.number}{tag} finished: val MAE {trial.value:.3f} +- {a['value_se']:.3f} with "
            f"{a['counting_name']} ({a['train_seconds']:.0f} s); best so far: trial "
            f"{study.best_trial.number} ({study.best_value:.3f})",
            flush=True,
        )
    elif trial.state == optuna.trial.TrialState.PRUNED:
        steps = trial.intermediate_values
        last = f" at epoch {max(steps)} (val MAE {steps[max(steps)]:.3f})" if steps else ""
        why = a.get("stopped", "pruned")
        print(f"trial {trial.number}{tag} {why}{last}", flush=True)
    else:
        reason = a.get("fail_reason", "see the log above")
        print(f"trial {trial.number}{tag} {trial.state.name.lower()}: {reason}", flush=True)


def run(args, argv=()) -> optuna.Study:
    """Run the study in this process, or with ``--workers`` above 1 in that many child processes."""
    prepare.check_args(args)
    check_study_name(args.study_name)
    # The data is checked before anything is written: a bad file must not create the study.
    split, source, rule = study_split(args.train, args.seed, prepare.VAL_FRACTION, args.split)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # set_metric_names and the grouped TPE are marked experimental; the notice is noise here.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage_url = given_storage(args.storage) or default_url(args.study_name, args.workers)
    if args.workers > 1 and is_sqlite(storage_url):
        raise UsageError(
            "--workers above 1 cannot share SQLite (it locks under concurrent writers): omit "
            "--storage for a journal file, or give journal:///FILE.log or a postgresql:// URL"
        )
    storage = open_storage(storage_url, heartbeat=args.heartbeat)
    study, profile = prepare.prepare_study(args, storage)
    print(
        f"data: {args.train}: {len(split.train_images)} training, "
        f"{len(split.val_images)} validation tiles (seed {args.seed}); true counts: {source}",
        flush=True,
    )
    print(f"split {rule}; {len(np.unique(split.val_groups))} images in validation", flush=True)
    # The summary and the report compare trials image by image: they need the validation images.
    study.set_user_attr("split_rule", rule)
    study.set_user_attr("val_groups", [int(g) for g in split.val_groups])
    note = StudyNote(len(split.train_images), len(split.val_images), source, rule, profile)
    note.ensure(study)

    n_trials = args.n_trials or profile.n_trials
    if args.workers > 1 and args.worker_index is None:
        workers.spawn_and_wait(list(argv), args.workers, storage_url)
        summarize(study, storage_url, n_trials)
        return study
    if args.worker_index is not None:
        torch.set_num_threads(workers.worker_threads(args.workers))

    run_trials(study, args, profile, split, n_trials, storage_url, note)
    if args.worker_index is None:  # the parent of several workers summarizes once for all
        summarize(study, storage_url, n_trials)
    return study


def run_trials(study, args, profile, split, n_trials: int, storage_url: str, note: StudyNote) -> None:
    """Run trials in this process until the study has ``n_trials`` finished ones or time is up."""
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    timeout = args.timeout or profile.timeout
    if done < n_trials:
        seed = prepare.sampler_seed(study, args.seed, args.worker_index, storage_url)
        study.sampler = prepare.make_sampler(args.sampler, seed)
        study.pruner = prepare.make_pruner(args.pruner, profile)
        objective = Objective(
            split,
            profile,
            cli.resolve_device(args.device),
            args.seed,
            args.objective,
            study_dir(study),
            time.monotonic() + timeout,
        )
        print(f"running up to {n_trials - done} trials (study target {n_trials}), timeout {timeout:.0f} s", flush=True)
        # Failed trials (diverged, crashed) don't count towards the target: stop on finished ones.
        failures = StopAfterFailures(n_trials)
        # Optuna's own report of a trial the timeout stopped is a traceback; print_trial says it in a line.
        logging.getLogger("optuna.study._optimize").addFilter(QUIET_TIMEOUT)
        # No trial starts once the objective's deadline has passed: it would be stopped at once.
        workers.run_until_target(
            study,
            objective,
            n_trials,
            timeout,
            catch=(FloatingPointError, StudyTimeout),
            callbacks=[print_trial, failures, note],
            should_stop=lambda: failures.failed >= failures.limit or time.monotonic() > objective.deadline,
            first=prepare.is_baseline,  # the study's summary compares every trial with it
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
    """The best trial beside the baseline, whether the gain is real, and how to browse and export."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        print(f"no finished trial yet: {no_complete_hint(study, target)}", flush=True)
        return
    best = study.best_trial
    print(
        f"\nbest trial {best.number}: val MAE {best.value:.3f} +- {best.user_attrs['value_se']:.3f} "
        f"(standard error over validation images) with {best.user_attrs['counting_name']}; params {best.params}"
    )
    baseline = baseline_trial(study)
    if baseline is not None:
        print(
            f"seed baseline (trial {baseline.number}): val MAE {baseline.value:.3f} as scored by the study, "
            f"{baseline.user_attrs['val_mae_seed_counting']:.3f} with the seed's own counting "
            f"({space.setting_name(space.SEED_COUNTING)})"
        )
    print(gain_line(study))
    print(
        f"browse: optuna-dashboard {dashboard_target(storage_url)} "
        f"--artifact-dir {artifact_dir(study)} --host 127.0.0.1"
    )
    export = f"python -m search.export --study-name {study.study_name}" + (
        f" --storage {dashboard_target(storage_url)}" if storage_url != default_url(study.study_name) else ""
    )
    print(f"export: {export}", flush=True)
    g = gain(study)
    if g is not None and g["best"] != g["baseline"] and not (g["significant"] and g["diff"] < 0):
        print(f"export the safe choice, the seed baseline: {export} --trial {g['baseline']}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run_command(
        lambda: run(args, sys.argv[1:] if argv is None else argv),
        "interrupted: finished trials are saved; run the same command to resume",
    )


if __name__ == "__main__":
    sys.exit(main())
