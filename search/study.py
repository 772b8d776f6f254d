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
import math
import secrets
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch

import data
from model.checkpoint import save_checkpoint
from model.count import count_errors, count_setting, mae_by_setting
from model.train import TrainConfig, fit, pick_device, seeded_net
from model.unet import UNetConfig, count_parameters
from search import space, stats, workers
from search.artifacts import StudyNote, artifact_dir, ensure_study_dir, log_trial_artifacts, study_dir
from search.errors import UsageError
from search.storage import check_study_name, dashboard_target, default_url, given_storage, is_sqlite, open_storage
from search.verdict import baseline_trial, gain_line

OBJECTIVE = "val_count_mae"
FINISHED = workers.FINISHED  # complete or pruned: what counts towards --n-trials
VAL_FRACTION = 0.2
BASELINE_STATES = (*FINISHED, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)


class StudyTimeout(Exception):
    """Raised in a trial that the study's timeout stops before its last epoch: the trial fails."""


@dataclass
class Split:
    """The study's fixed train/validation tiles, with the true validation counts."""

    train_images: np.ndarray
    train_masks: np.ndarray
    val_images: np.ndarray
    val_masks: np.ndarray
    val_counts: np.ndarray
    val_groups: np.ndarray  # source image of each validation tile


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m search.study",
        description="Run or resume an Optuna study that searches U-Net training and "
        "cell-counting settings; objective: validation count-MAE (lower is better).",
    )
    p.add_argument("--study-name", default="cells", help="study name (default: %(default)s)")
    p.add_argument("--storage", help="sqlite:///FILE.db, journal:///FILE.log (or FILE.log) or a database "
                   "URL such as postgresql://user:password@host/db (default: $CELLCOUNT_STORAGE, else "
                   "sqlite:///studies/<name>.db; journal:///studies/<name>.journal.log with --workers above 1)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes running trials at once on this machine: one GPU each when several "
                   "are visible, else the CPU cores split between them (default: %(default)s)")
    p.add_argument("--heartbeat", type=int, default=60,
                   help="seconds between a running trial's heartbeats on a database storage; a trial "
                   "silent for twice as long (its worker died) is failed and run again (default: %(default)s)")
    # Set by --workers on the processes it starts: which worker this is.
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    p.add_argument("--train", type=Path, default=data.DEFAULT_TRAIN,
                   help="training npz with X and y (default: the embedded DSB2018-fluo tiles)")
    p.add_argument("--n-trials", type=int,
                   help="finished trials the study should reach, counting earlier runs "
                   "(default: the profile's)")
    p.add_argument("--timeout", type=float,
                   help="seconds for this run; a trial still running then is stopped "
                   "(default: the profile's: quick 1080, full 14400)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    p.add_argument("--profile", choices=sorted(space.PROFILES),
                   help="full: the seed write-up's full-size net, for a GPU; quick: a small net for "
                   "CPUs (default: full on CUDA, quick otherwise)")
    p.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                   help="how weak trials are stopped early (default: %(default)s)")
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe",
                   help="how parameters are sampled (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the split, the sampler and every trial's training (default: 0)")
    p.add_argument("--objective", choices=("tuned", "sampled"), default="tuned",
                   help="tuned: choose each trial's counting setting on validation after training "
                   "and score it out of sample (chosen on half of the validation images, scored on "
                   "the other half, both ways round); sampled: sample the counting setting as "
                   "parameters (default: %(default)s)")
    p.add_argument("--split", choices=("image", "tile"), default="image",
                   help="image: no source image on both sides of the train/validation split (its "
                   "'groups' array, else tiles linked by shared rows or columns of pixels); tile: "
                   "a per-tile split, which lets validation reward memorising (default: %(default)s)")
    return p.parse_args(argv)


def resolve_device(name: str):
    try:
        return pick_device(name)
    except ValueError as exc:
        raise UsageError(f"--device: {exc}")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # Few startup trials: a CPU study only affords a dozen trials or so.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True, group=True)


def make_pruner(name: str, profile: space.Profile) -> optuna.pruners.BasePruner:
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2, max_resource=profile.epochs[1])
    if name == "none":
        return optuna.pruners.NopPruner()
    # Warm-up of 4 epochs: long cosine schedules decay late and look worse early on.
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=4)


def tile_groups(train_path: Path, images: np.ndarray, split: str) -> tuple[np.ndarray, str]:
    """Source image of every tile, and the rule that gave it."""
    if split == "tile":
        return np.arange(len(images)), "per tile (--split tile): tiles of one image on both sides"
    stored = data.load_tile_ints(train_path, "groups", len(images))
    if stored is not None:
        return stored, f"by source image ('groups' array: {len(np.unique(stored))} images)"
    found = data.find_overlap_groups(images)
    return found, (f"by source image, found from shared rows/columns of pixels ({found.max() + 1} groups "
                   f"in {len(images)} tiles)")


def load_split(train_path: Path, seed: int, val_fraction: float, split: str) -> tuple[Split, str, str]:
    """The study's split, where its true counts come from and how tiles were grouped."""
    images, masks = data.load_train(train_path)
    counts = data.load_tile_ints(train_path, "counts", len(images))
    source = "stored counts"
    if counts is None:
        # Competition archives ship masks only: count the true masks with the default counter.
        counts = count_setting(masks, {"counter": "watershed"})
        source = "counted from the true masks (watershed defaults)"
    groups, rule = tile_groups(train_path, images, split)
    try:
        train_idx, val_idx = data.split_groups(groups, val_fraction, seed)
    except ValueError as exc:  # e.g. a single source image, or too few tiles
        raise data.DataError(train_path, f"cannot split into training and validation tiles: {exc}")
    split = Split(images[train_idx], masks[train_idx], images[val_idx], masks[val_idx],
                  counts[val_idx], groups[val_idx])
    return split, source, rule


@dataclass
class Scored:
    """How a trained trial counts its validation tiles, and its value."""

    counting: dict  # the setting used from now on (the export's)
    errors: np.ndarray  # per-tile errors that make the value
    grid_errors: np.ndarray  # (settings, tiles) errors of every counting setting

    @property
    def value(self) -> float:
        return float(np.abs(self.errors).mean())


class Objective:
    """Train one sampled configuration and return its validation count-MAE."""

    def __init__(self, split, profile, device, seed, mode, out_dir, deadline):
        self.split, self.profile, self.device = split, profile, device
        self.seed, self.mode, self.out_dir, self.deadline = seed, mode, Path(out_dir), deadline
        self.grid = space.counting_grid()

    def epoch_score(self, sampled: dict | None):
        """Per-epoch validation MAE: the sampled setting, or the best of a few when tuning."""
        settings = [sampled] if self.mode == "sampled" else space.monitor_settings(None)
        return lambda prob: min(m for m, _ in mae_by_setting(prob, self.split.val_counts, settings))

    def score(self, prob: np.ndarray, sampled: dict | None) -> Scored:
        """Count the validation tiles with every setting; the value is scored out of sample.

        Tuned: the setting is chosen on half of the validation images and scored on the other
        half (both ways round), so the value is not the luckiest of the grid; the setting kept
        is the best on all of them. Sampled: the sampled setting, as it is.
        """
        errors = count_errors(prob, self.split.val_counts, self.grid)
        if self.mode == "sampled":
            row = self.grid.index(sampled)
            return Scored(sampled, errors[row], errors)
        crossfit, chosen = stats.crossfit_errors(errors, self.split.val_groups, self.seed)
        return Scored(self.grid[chosen], crossfit, errors)

    def on_epoch(self, trial: optuna.Trial, params: dict, epochs: int):
        """The per-epoch callback: print, fail on NaN, report for pruning, stop at the deadline."""
        def callback(r):
            print(f"  trial {trial.number} epoch {r.epoch}/{epochs}: train loss {r.train_loss:.4f}"
                  f"  val loss {r.val_loss:.4f}  val MAE {r.val_mae:.3f}  ({r.seconds:.1f} s)", flush=True)
            if not math.isfinite(r.train_loss):
                reason = f"training loss became {r.train_loss} at epoch {r.epoch}"
                trial.set_user_attr("fail_reason", reason)
                raise FloatingPointError(reason)
            trial.report(r.val_mae, r.epoch)
            # After the last epoch the trial is done: finish it, whatever the time.
            if r.epoch < epochs and time.monotonic() > self.deadline:
                raise stop_at_timeout(trial, params, r.epoch, epochs)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {r.epoch} (val MAE {r.val_mae:.3f})")
        return callback

    def __call__(self, trial: optuna.Trial) -> float:
        params = space.suggest(trial, self.profile, self.mode)
        sampled = space.counting_of(params) if self.mode == "sampled" else None
        unet = UNetConfig(params["depth"], params["upsample"], self.profile.base)
        train = TrainConfig(**space.train_options(params), seed=self.seed)
        net = seeded_net(unet, self.seed, self.device)
        trial.set_user_attr("device", str(self.device))
        trial.set_user_attr("n_params", count_parameters(net))
        s = self.split
        result = fit(net, train, s.train_images, s.train_masks, s.val_images, s.val_masks,
                     score_fn=self.epoch_score(sampled), on_epoch=self.on_epoch(trial, params, train.epochs))
        scored = self.score(result.val_prob, sampled)
        record_scores(trial, scored, self.grid, s.val_groups)
        trial.set_user_attr("train_seconds", round(result.train_seconds, 1))
        trial.set_user_attr("learning_curve", [
            {"epoch": r.epoch, "train_loss": round(r.train_loss, 5), "val_loss": round(r.val_loss, 5),
             "val_mae": round(r.val_mae, 4)} for r in result.history])
        ckpt = save_checkpoint(self.out_dir / f"trial-{trial.number:04d}", result.state_dict, unet, {
            "train": train.to_dict(), "params": params, "counting": scored.counting, "val_mae": scored.value,
            **checkpoint_record(trial, s),
        })
        trial.set_user_attr("checkpoint", str(ckpt))
        log_trial_artifacts(trial, result, s, scored.counting, ckpt)  # figures + checkpoint for the dashboard
        return scored.value


def record_scores(trial: optuna.Trial, scored: Scored, grid: list[dict], groups: np.ndarray) -> None:
    """Record the trial's counting and its scores as user attributes (shown by the dashboard)."""
    counting, errors = scored.counting, scored.errors
    mae = np.abs(scored.grid_errors).mean(1)
    by_name = {space.setting_name(g): round(float(m), 4) for g, m in zip(grid, mae)}
    trial.set_user_attr("counting", counting)
    trial.set_user_attr("counting_name", space.setting_name(counting))
    # The brief's fifth parameter: chosen after training unless sampled, and shown either way.
    trial.set_user_attr("offset", counting["offset"])
    trial.set_user_attr("value_se", round(stats.mae_se(errors, groups), 4))
    trial.set_user_attr("val_bias", round(float(errors.mean()), 4))
    trial.set_user_attr("val_errors", [int(e) for e in errors])
    trial.set_user_attr("val_mae_best_in_sample", float(mae.min().round(4)))
    trial.set_user_attr("val_mae_seed_counting", by_name[space.setting_name(space.SEED_COUNTING)])
    for setting in space.with_offsets(counting):
        trial.set_user_attr(f"val_mae_offset_{setting['offset']:+d}", by_name[space.setting_name(setting)])
    trial.set_user_attr("counting_scores", by_name)


def stop_at_timeout(trial: optuna.Trial, params: dict, epoch: int, epochs: int) -> StudyTimeout:
    """Record why the timeout stops ``trial`` and queue its parameters again; returns what to raise.

    The stopped trial fails, so it does not count towards --n-trials; the queued copy (still
    the baseline or the warm start if it was) runs first when the study resumes.
    """
    reason = f"stopped by the study timeout after epoch {epoch} of {epochs}; queued again"
    trial.set_user_attr("stopped", "study timeout reached")
    trial.set_user_attr("fail_reason", reason)
    attrs = {"requeued_from": trial.number}
    attrs.update({k: True for k in ("baseline", "warm_start") if trial.user_attrs.get(k)})
    trial.study.enqueue_trial(params, user_attrs=attrs)
    return StudyTimeout(reason)


class QuietTimeout(logging.Filter):
    """Drops Optuna's traceback of a trial stopped by the timeout: ``print_trial`` says why."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StudyTimeout))


QUIET_TIMEOUT = QuietTimeout()  # one instance: adding it again on every run is then a no-op


def checkpoint_record(trial: optuna.Trial, split: Split) -> dict:
    """What the export checks a checkpoint against: its study, trial and training tile size."""
    return {"study": trial.study.study_name, "study_folder": study_dir(trial.study).name,
            "trial": trial.number, "tile_size": list(split.train_images.shape[1:])}


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
        print(f"trial {trial.number}{tag} finished: val MAE {trial.value:.3f} +- {a['value_se']:.3f} with "
              f"{a['counting_name']} ({a['train_seconds']:.0f} s); best so far: trial "
              f"{study.best_trial.number} ({study.best_value:.3f})", flush=True)
    elif trial.state == optuna.trial.TrialState.PRUNED:
        steps = trial.intermediate_values
        last = f" at epoch {max(steps)} (val MAE {steps[max(steps)]:.3f})" if steps else ""
        why = a.get("stopped", "pruned")
        print(f"trial {trial.number}{tag} {why}{last}", flush=True)
    else:
        reason = a.get("fail_reason", "see the log above")
        print(f"trial {trial.number}{tag} {trial.state.name.lower()}: {reason}", flush=True)


def prepare_study(args, storage) -> tuple[optuna.Study, space.Profile]:
    """Create the study, or check that resuming it is consistent; returns it and its profile."""
    device = resolve_device(args.device)
    fingerprint = data.fingerprint(args.train)
    if args.study_name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=args.study_name, storage=storage)
        meta = study.user_attrs
        if study.direction != optuna.study.StudyDirection.MINIMIZE or meta.get("objective") != OBJECTIVE:
            raise UsageError(f"study {args.study_name!r} exists with another objective; pick another --study-name")
        if meta["train_fingerprint"] != fingerprint:
            raise UsageError(f"{args.train} differs from the data the study {args.study_name!r} started with "
                             f"({meta['train_path']}); use another --study-name")
        if args.profile and args.profile != meta["profile"]:
            raise UsageError(f"study {args.study_name!r} uses profile {meta['profile']!r}, not {args.profile!r}")
        if (meta["seed"], meta["counting_objective"], meta["split"]) != (args.seed, args.objective, args.split):
            raise UsageError(f"study {args.study_name!r} was started with --seed {meta['seed']} "
                             f"--objective {meta['counting_objective']} --split {meta['split']}; "
                             "resume with the same values")
        profile = space.PROFILES[meta["profile"]]
        why = "recorded in the study"
        print(f"resuming study {args.study_name!r}: {len(study.trials)} trials so far", flush=True)
    else:
        profile = space.PROFILES[args.profile or ("full" if device.type == "cuda" else "quick")]
        why = "chosen" if args.profile else f"default for {device.type}"
        study = optuna.create_study(study_name=args.study_name, storage=storage, direction="minimize")
        study.set_metric_names([OBJECTIVE])
        for key, value in {
            "objective": OBJECTIVE, "train_path": str(args.train), "train_fingerprint": fingerprint,
            "profile": profile.name, "seed": args.seed, "val_fraction": VAL_FRACTION,
            "counting_objective": args.objective, "split": args.split,
        }.items():
            study.set_user_attr(key, value)
        print(f"new study {args.study_name!r}; first trials: the seed's own configuration (baseline), "
              "then the harness's warm start (cosine schedule, augmentation)", flush=True)
    ensure_study_dir(study)
    ensure_baseline(study, profile, args.objective)
    if not study.trials[1:]:  # a new study: the warm start follows the baseline (partial when sampled)
        study.enqueue_trial(space.warm_start(profile), user_attrs={"warm_start": True})
    print(f"profile {profile.name!r} ({why}): U-Net base width {profile.base}, epochs "
          f"{profile.epochs[0]}-{profile.epochs[1]}; device {device}", flush=True)
    return study, profile


def ensure_baseline(study: optuna.Study, profile: space.Profile, mode: str) -> None:
    """Queue the seed baseline unless a baseline trial finished, runs or waits.

    Checked on every run, not only at creation: a baseline interrupted by Ctrl-C fails, and
    the study would otherwise never get one.
    """
    trials = study.get_trials(deepcopy=False, states=BASELINE_STATES)
    if not any(t.user_attrs.get("baseline") for t in trials):
        study.enqueue_trial(space.seed_baseline(profile, mode), user_attrs={"baseline": True})


def sampler_seed(study: optuna.Study, seed: int, worker_index: int | None, storage_url: str) -> int:
    """The sampler's seed: ``seed + trials so far``, with random bits mixed in when shared.

    One process on SQLite (the default) stays reproducible: the same --seed gives the same
    trials. Processes sharing a study (--workers, a journal or a database that other machines
    may use, or trials running elsewhere) could see the same state at the same instant and
    draw the same configurations, so each mixes in random bits of its own.
    """
    base = seed + len(study.trials)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if worker_index is None and is_sqlite(storage_url) and not running:
        return base
    return base ^ secrets.randbits(32)


def run(args, argv=()) -> optuna.Study:
    """Run the study in this process, or with ``--workers`` above 1 in that many child processes."""
    if args.n_trials is not None and args.n_trials < 1:
        raise UsageError("--n-trials must be at least 1")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.heartbeat < 1:
        raise UsageError("--heartbeat must be at least 1 second")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    check_study_name(args.study_name)
    # The data is checked before anything is written: a bad file must not create the study.
    split, source, rule = load_split(args.train, args.seed, VAL_FRACTION, args.split)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # set_metric_names and the grouped TPE are marked experimental; the notice is noise here.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage_url = given_storage(args.storage) or default_url(args.study_name, args.workers)
    if args.workers > 1 and is_sqlite(storage_url):
        raise UsageError("--workers above 1 cannot share SQLite (it locks under concurrent writers): omit "
                         "--storage for a journal file, or give journal:///FILE.log or a postgresql:// URL")
    storage = open_storage(storage_url, heartbeat=args.heartbeat)
    study, profile = prepare_study(args, storage)
    print(f"data: {args.train}: {len(split.train_images)} training, "
          f"{len(split.val_images)} validation tiles (seed {args.seed}); true counts: {source}", flush=True)
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

    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    timeout = args.timeout or profile.timeout
    if done < n_trials:
        study.sampler = make_sampler(args.sampler, sampler_seed(study, args.seed, args.worker_index, storage_url))
        study.pruner = make_pruner(args.pruner, profile)
        objective = Objective(split, profile, resolve_device(args.device), args.seed, args.objective,
                              study_dir(study), time.monotonic() + timeout)
        print(f"running up to {n_trials - done} trials (study target {n_trials}), timeout {timeout:.0f} s", flush=True)
        # Failed trials (diverged, crashed) don't count towards the target: stop on finished ones.
        failures = StopAfterFailures(n_trials)
        # Optuna's own report of a trial the timeout stopped is a traceback; print_trial says it in a line.
        logging.getLogger("optuna.study._optimize").addFilter(QUIET_TIMEOUT)
        # No trial starts once the objective's deadline has passed: it would be stopped at once.
        workers.run_until_target(study, objective, n_trials, timeout, catch=(FloatingPointError, StudyTimeout),
                                 callbacks=[print_trial, failures, note],
                                 should_stop=lambda: failures.failed >= failures.limit
                                 or time.monotonic() > objective.deadline)
    if args.worker_index is None:  # the parent of several workers summarizes once for all
        summarize(study, storage_url, n_trials)
    return study


def no_complete_hint(study: optuna.Study, target: int) -> str:
    """What to do about a study with no complete trial; never "run again" when that would do nothing."""
    if len(study.get_trials(deepcopy=False, states=FINISHED)) >= target:
        return f"all {target} finished trials were pruned: raise --n-trials to run more"
    if any(t.user_attrs.get("stopped") for t in study.get_trials(deepcopy=False)):
        return ("the timeout stopped a trial before its last epoch and queued it again: run the same command "
                "to continue, with a longer --timeout if one trial needs more time than that")
    return "run the same command again to continue"


def summarize(study: optuna.Study, storage_url: str, target: int) -> None:
    """The best trial beside the baseline, whether the gain is real, and how to browse and export."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        print(f"no finished trial yet: {no_complete_hint(study, target)}", flush=True)
        return
    best = study.best_trial
    print(f"\nbest trial {best.number}: val MAE {best.value:.3f} +- {best.user_attrs['value_se']:.3f} "
          f"(standard error over validation images) with {best.user_attrs['counting_name']}; params {best.params}")
    baseline = baseline_trial(study)
    if baseline is not None:
        print(f"seed baseline (trial {baseline.number}): val MAE {baseline.value:.3f} as scored by the study, "
              f"{baseline.user_attrs['val_mae_seed_counting']:.3f} with the seed's own counting "
              f"({space.setting_name(space.SEED_COUNTING)})")
    print(gain_line(study))
    print(f"browse: optuna-dashboard {dashboard_target(storage_url)} "
          f"--artifact-dir {artifact_dir(study)} --host 127.0.0.1")
    print(f"export: python -m search.export --study-name {study.study_name}"
          + (f" --storage {dashboard_target(storage_url)}" if storage_url != default_url(study.study_name) else ""),
          flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args, sys.argv[1:] if argv is None else argv)
    except (UsageError, data.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except workers.WorkersFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are saved; run the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
