"""Create or resume a study: consistency checks, the reference and warm start, sampler and pruner."""

from __future__ import annotations

import math
import secrets
import time

import optuna

import data
from search import space
from search.errors import UsageError
from search.roles import BASELINE_ATTR, WARM_START_ATTR, is_baseline
from search.runtime import workers
from search.runtime.artifacts import ensure_study_dir
from search.runtime.storage import is_sqlite
from search.stages import finalists

OBJECTIVE = "val_count_mae"
VAL_FRACTION = 0.2
BASELINE_STATES = (*workers.FINISHED, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
MAX_SEED = 2**31 - 1  # --seed: a signed 32-bit integer, valid for every seeded library
SAMPLER_SEEDS = 2**32  # numpy (and so Optuna's samplers) take seeds below this
ANNOTATION_ATTR = "annotation"  # study attr: "masks", "dots" or "masks+dots", what its trials train from
# Study attr set once a new study is set up (recorded, its first trials queued): a process that
# finds it created but not set up (they started at once) waits up to JOIN_SECONDS before joining.
SET_UP_ATTR = "set_up"
JOIN_SECONDS = 10


def check_args(args) -> None:
    """Refuse numeric options out of range, in one line each, before the data is read."""
    if args.n_trials is not None and args.n_trials < 1:
        raise UsageError("--n-trials must be at least 1")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.heartbeat < 1:
        raise UsageError("--heartbeat must be at least 1 second")
    # A NaN or infinite timeout never passes: the run would wait on nothing or never end.
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UsageError(f"--timeout must be positive and finite, got {args.timeout}")
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be in 0..{MAX_SEED}, got {args.seed}")
    if args.finalists is not None and not (args.finalists == 0 or 2 <= args.finalists <= finalists.MAX_FINALISTS):
        raise UsageError(
            f"--finalists must be 0 (no finalist stage) or 2..{finalists.MAX_FINALISTS} "
            "(the best trial, the reference, runners-up)"
        )
    if args.folds is not None and not 2 <= args.folds <= finalists.MAX_FOLDS:
        raise UsageError(f"--folds must be in 2..{finalists.MAX_FOLDS}")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """TPE (multivariate, grouped for the conditional counting parameters) or random search."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # Few startup trials: a CPU study only affords a dozen trials or so.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True, group=True)


def make_pruner(name: str, profile: space.Profile) -> optuna.pruners.BasePruner:
    """The median pruner (default), Hyperband over the profile's epochs, or none."""
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2, max_resource=profile.epochs[1])
    if name == "none":
        return optuna.pruners.NopPruner()
    # Warm-up of 4 epochs: long cosine schedules decay late and look worse early on.
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=4)


def prepare_study(args, storage, annotation: str, device, crowded: bool = False) -> tuple[optuna.Study, space.Profile]:
    """Create the study, or check that resuming it is consistent; returns it and its profile.

    ``annotation`` is what the training file can train from, ``"masks"``, ``"dots"`` or
    ``"masks+dots"`` (``data.Split.annotation``); a study keeps it and resumes only with the same,
    but one created as masks alone resumes on its file, which has centres too, as masks alone
    (:func:`study_annotation`). ``device`` (a ``torch.device``) picks the default profile;
    ``crowded`` centres give a new study a warm start that trains density maps (``space.warm_start``).
    """
    fingerprint = data.fingerprint(args.train)
    new = args.study_name not in optuna.get_all_study_names(storage)
    if new:
        profile = space.PROFILES[args.profile or ("full" if device.type == "cuda" else "quick")]
        why = "chosen" if args.profile else f"default for {device.type}"
        try:
            study = create_study(args, storage, annotation, fingerprint, profile)
        except optuna.exceptions.DuplicatedStudyError:  # another process created it a moment ago: join it
            new = False
    if not new:
        study = load_set_up_study(args.study_name, storage)
        check_resume(study, args, annotation, fingerprint)
        annotation = study_annotation(study)
        profile, why = space.PROFILES[study.user_attrs["profile"]], "recorded in the study"
        print(f"resuming study {args.study_name!r}: {len(study.trials)} trials so far", flush=True)
    ensure_study_dir(study)
    stale = finalists.drop_stale(study)
    if stale:
        print(stale, flush=True)
    ensure_baseline(study, profile, args.objective, annotation)
    if not study.trials[1:]:  # a new study: the warm start follows the baseline (partial when sampled)
        study.enqueue_trial(space.warm_start(profile, annotation, crowded), user_attrs={WARM_START_ATTR: True})
    # Here too, not only in the run loop: the parent of --workers orders the queue before they start.
    workers.queue_first(study, is_baseline)
    if not study.user_attrs.get(SET_UP_ATTR):
        study.set_user_attr(SET_UP_ATTR, True)
    print(
        f"profile {profile.name!r} ({why}): U-Net base width {profile.base}, epochs "
        f"{profile.epochs[0]}-{profile.epochs[1]}; device {device}",
        flush=True,
    )
    return study, profile


def load_set_up_study(name: str, storage) -> optuna.Study:
    """The existing study ``name``, once the process that created it has set it up.

    Two processes started at once on a new study: the one that did not create it waits, up to
    ``JOIN_SECONDS``, for the other to record the study and queue its first trials, then joins
    it as a second worker would. After that it goes on with the study as it is (its creator died).
    """
    deadline = time.monotonic() + JOIN_SECONDS
    study = optuna.load_study(study_name=name, storage=storage)
    if not is_set_up(study):
        print(f"study {name!r} is being set up by the process that created it; waiting to join it", flush=True)
    while not is_set_up(study) and time.monotonic() < deadline:
        time.sleep(0.2)
        study = optuna.load_study(study_name=name, storage=storage)
    return study


def is_set_up(study: optuna.Study) -> bool:
    """Whether the study's creator has set it up, or there is nothing to wait for.

    One from before the mark is set up once a trial has started; one of another direction is
    no study of this command's (``check_resume`` refuses it).
    """
    if study.user_attrs.get(SET_UP_ATTR) or study.direction != optuna.study.StudyDirection.MINIMIZE:
        return True
    return any(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False))


def check_resume(study: optuna.Study, args, annotation: str, fingerprint: str) -> None:
    """Refuse to resume ``study`` with other data, annotation, profile, seed, objective or split."""
    meta, name = study.user_attrs, args.study_name
    if study.direction != optuna.study.StudyDirection.MINIMIZE or meta.get("objective") != OBJECTIVE:
        raise UsageError(f"study {name!r} exists with another objective; pick another --study-name")
    recorded = study_annotation(study)
    if recorded != annotation and (recorded, annotation) != ("masks", "masks+dots"):
        raise UsageError(
            f"study {name!r} trains from {recorded}, but {args.train} has {annotation}"
            f"{' and no masks' if annotation == 'dots' else ''}; use another --study-name"
        )
    if meta["train_fingerprint"] != fingerprint:
        raise UsageError(
            f"{args.train} differs from the data the study {name!r} started with "
            f"({meta['train_path']}); use another --study-name"
        )
    if args.profile and args.profile != meta["profile"]:
        raise UsageError(f"study {name!r} uses profile {meta['profile']!r}, not {args.profile!r}")
    if (meta["seed"], meta["counting_objective"], meta["split"]) != (args.seed, args.objective, args.split):
        raise UsageError(
            f"study {name!r} was started with --seed {meta['seed']} "
            f"--objective {meta['counting_objective']} --split {meta['split']}; "
            "resume with the same values"
        )


def study_annotation(study: optuna.Study) -> str:
    """What ``study``'s trials train from; studies from before dots could train have no record: masks."""
    return study.user_attrs.get(ANNOTATION_ATTR, "masks")


def create_study(args, storage, annotation: str, fingerprint: str, profile: space.Profile) -> optuna.Study:
    """A new study recording what a resume must match."""
    study = optuna.create_study(study_name=args.study_name, storage=storage, direction="minimize")
    study.set_metric_names([OBJECTIVE])
    for key, value in {
        "objective": OBJECTIVE,
        "train_path": str(args.train),
        "train_fingerprint": fingerprint,
        "profile": profile.name,
        "seed": args.seed,
        "val_fraction": VAL_FRACTION,
        "counting_objective": args.objective,
        "split": args.split,
        ANNOTATION_ATTR: annotation,
    }.items():
        study.set_user_attr(key, value)
    print(
        f"new study {args.study_name!r}; first trials: the reference configuration (baseline), "
        "then the harness's warm start (cosine schedule, augmentation)",
        flush=True,
    )
    return study


def ensure_baseline(study: optuna.Study, profile: space.Profile, mode: str, annotation: str) -> None:
    """Queue the reference unless a baseline trial finished, runs or waits.

    Checked on every run, not only at creation: a baseline interrupted by Ctrl-C fails, and
    the study would otherwise never get one. Queued behind other trials, it still starts
    before them (``workers.queue_first``).
    """
    trials = study.get_trials(deepcopy=False, states=BASELINE_STATES)
    if not any(is_baseline(t) for t in trials):
        study.enqueue_trial(space.reference_config(profile, mode, annotation), user_attrs={BASELINE_ATTR: True})


def sampler_seed(study: optuna.Study, seed: int, worker_index: int | None, storage_url: str) -> int:
    """The sampler's seed: ``seed + trials so far``, with random bits mixed in when shared.

    One process on SQLite (the default) stays reproducible: the same --seed gives the same
    trials. Processes sharing a study (--workers, a journal or a database that other machines
    may use, or trials running elsewhere) could see the same state at the same instant and
    draw the same configurations, so each mixes in random bits of its own. The sum wraps
    around below ``2**32``, the seeds numpy accepts, however many trials the study has.
    """
    base = (seed + len(study.trials)) % SAMPLER_SEEDS
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if worker_index is None and is_sqlite(storage_url) and not running:
        return base
    return base ^ secrets.randbits(32)
