"""The options of ``python -m search.study``: search, scoring, finalist stage and parallel workers.

The storage, study name and device options the commands share are :mod:`search.cli`'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import data
from search import cli, space
from search.stages import finalists


def parse_args(argv=None) -> argparse.Namespace:
    """The command's options, from ``argv`` (the command line when None)."""
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
        "runs still to do would take the rest, and every run still going at the end is stopped, to "
        "continue from its last epoch when the same command runs again. Default: the profile's budget "
        "(quick 1080, full 14400) for the search, and the reference, warm start and finalist runs "
        "always run to the end, however long this machine needs (the first plan line says when)",
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


def stage_size(args, profile: space.Profile) -> tuple[int, int]:
    """Finalists and folds of this run: the options, else the profile's."""
    k = profile.finalists if args.finalists is None else args.finalists
    return k, profile.folds if args.folds is None else args.folds
