"""The objective of a study: train one configuration, count its validation tiles, score it honestly.

Per trial: train the sampled configuration on the file's masks, or on the target drawn at its
cell centres (disks of the trial's radius, or a density map), and keep its last epoch; count the validation tiles
(cut from other source images than the training tiles) with every counting setting; choose the
setting out of sample and record the value's standard error over validation images (``scores``).
Per-epoch scores are reported for pruning; the study's timeout stops a trial between epochs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import optuna

import data
from model.checkpoint import save_checkpoint
from model.count import count_setting
from model.resume import discard_state
from model.scoring import mae_by_setting
from model.targets import density_targets, disk_targets
from model.train import FitResult, TrainConfig, fit, seeded_net
from model.unet import UNetConfig, count_parameters
from search import space
from search.roles import FOLDER_ATTR, SEED_ATTR, is_required, run_key, trial_label
from search.runtime.artifacts import log_trial_artifacts
from search.stages.runs import NoTime, fail_and_requeue, state_file, stop_at_interrupt, stop_at_timeout
from search.stages.scores import learning_curve, record_scores, score


def with_val_counts(split: data.Split) -> str:
    """Fill ``split.val_counts`` when the file stored none; returns where they come from."""
    if split.val_counts is not None:
        return "stored counts"
    if split.annotation == "dots":
        split.val_counts = data.point_counts(split.val_points, len(split.val_images))
        return "the dots per tile ('points')"
    # Competition archives ship masks only: count the true masks with the default counter.
    split.val_counts = count_setting(split.val_masks, {"counter": "watershed"})
    return "counted from the true masks (watershed defaults)"


def study_split(path: Path, seed: int, val_fraction: float, by: str) -> tuple[data.Split, str, str]:
    """The study's split, where its true counts come from and how tiles were grouped."""
    split, rule = data.load_split(path, seed, val_fraction, by)
    return split, with_val_counts(split), rule


def fold_split(split: data.Split, folds: np.ndarray, fold: int) -> data.Split:
    """The split of the finalist run that holds out ``fold`` of the training tiles, with its true counts."""
    held_out = data.fold_split(split, folds, fold)
    with_val_counts(held_out)
    return held_out


def validates_every_epoch(trial: optuna.Trial) -> bool:
    """Whether ``trial`` scores validation after every epoch (a search trial, for pruning).

    A finalist run is never pruned: it scores its held-out fold once, after its last epoch.
    """
    return run_key(trial) is None


def training_targets(images: np.ndarray, masks: np.ndarray | None, points: np.ndarray | None, params: dict):
    """What the net learns to predict for ``images``: their masks, or the trial's target drawn at their centres."""
    if not space.trains_from_centres(params):
        return masks
    if space.trains_density(params):
        return density_targets(points, len(images), images.shape[1:], params[space.SIGMA])
    return disk_targets(points, len(images), images.shape[1:], params[space.RADIUS])


class Objective:
    """Train one sampled configuration and return its validation count-MAE.

    ``seed`` seeds the training of every trial but one that carries its own ``train_seed``
    attribute (a finalist run). ``deadline(trial)`` returns the ``time.monotonic()`` after which
    the trial stops at the end of its epoch, its state saved and the trial queued again to
    continue from there (``runs``); it is read after every epoch. A search trial other than the
    reference and the warm start whose epochs, at ``epoch_seconds()`` each (None: not known
    yet), would end after it is not started: it fails at once and ``out_of_time`` becomes True.
    The reference, the warm start and finalist runs always start: what they train before the
    deadline is kept. ``on_epoch_seconds`` is called with the seconds of each epoch this
    process trains. Run states live in ``state_dir`` (default: ``out_dir/resume``).
    """

    def __init__(
        self,
        split,
        profile,
        device,
        seed,
        mode,
        out_dir,
        deadline: Callable[[optuna.Trial], float],
        epoch_seconds: Callable[[], float | None] = lambda: None,
        on_epoch_seconds: Callable[[float], None] = lambda seconds: None,
        state_dir: Path | None = None,
    ):
        self.split, self.profile, self.device = split, profile, device
        self.seed, self.mode, self.out_dir, self.deadline = seed, mode, Path(out_dir), deadline
        self.epoch_seconds, self.on_epoch_seconds = epoch_seconds, on_epoch_seconds
        self.state_dir = Path(state_dir) if state_dir is not None else self.out_dir / "resume"
        self.out_of_time = False

    def epoch_score(self, sampled: dict | None, density: bool):
        """Per-epoch validation MAE: the sampled setting, or the best of a few when tuning."""
        settings = [sampled] if self.mode == "sampled" else space.monitor_settings(density)
        return lambda prob: min(m for m, _ in mae_by_setting(prob, self.split.val_counts, settings))

    def on_epoch(self, trial: optuna.Trial, params: dict, epochs: int):
        """The per-epoch callback: print, fail on NaN, report for pruning, stop at the deadline."""

        name, every_epoch = trial_label(trial), validates_every_epoch(trial)

        def callback(r):
            scored = every_epoch or r.epoch == epochs
            if r.restored:  # finished by an earlier attempt: its curve goes on, its speed is not this run's
                if scored and math.isfinite(r.val_mae):
                    trial.report(r.val_mae, r.epoch)
                print(f"  {name} epoch {r.epoch}/{epochs}: restored from the saved state", flush=True)
                return
            self.on_epoch_seconds(r.steady_seconds if math.isfinite(r.steady_seconds) else r.seconds)
            val = f"  val loss {r.val_loss:.4f}  val MAE {r.val_mae:.3f}" if scored else ""
            print(
                f"  {name} epoch {r.epoch}/{epochs}: train loss {r.train_loss:.4f}{val}  ({r.seconds:.1f} s)",
                flush=True,
            )
            if not math.isfinite(r.train_loss):
                reason = f"training loss became {r.train_loss} at epoch {r.epoch}"
                trial.set_user_attr("fail_reason", reason)
                trial.set_user_attr("diverged", True)  # the same seed would diverge again: no retry
                raise FloatingPointError(reason)
            if scored:
                trial.report(r.val_mae, r.epoch)
            # After the last epoch the trial is done: finish it, whatever the time.
            if r.epoch < epochs and time.monotonic() > self.deadline(trial):
                raise stop_at_timeout(trial, params, r.epoch, epochs)
            if scored and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {r.epoch} (val MAE {r.val_mae:.3f})")

        return callback

    def __call__(self, trial: optuna.Trial) -> float:
        s = self.split
        params = space.suggest(trial, self.profile, self.mode, s.annotation)
        sampled = space.counting_of(params) if self.mode == "sampled" else None
        density = space.trains_density(params)  # counted by its sum, not thresholds
        grid = space.counting_grid(density)
        started = time.monotonic()
        self.check_time(trial, params, started)
        unet = UNetConfig(params["depth"], params["upsample"], self.profile.base)
        train = TrainConfig(
            **space.train_options(params, self.profile), seed=trial.user_attrs.get(SEED_ATTR, self.seed)
        )
        result = self.train(trial, params, unet, train, self.epoch_score(sampled, density))
        scored = score(result.val_prob, s, self.mode, self.seed, sampled, grid)
        record_scores(trial, scored, grid, s.val_groups)
        trial.set_user_attr("train_seconds", round(result.train_seconds, 1))
        trial.set_user_attr("learning_curve", learning_curve(result.history))
        ckpt = save_checkpoint(
            self.out_dir / f"trial-{trial.number:04d}",
            result.state_dict,
            unet,
            {
                "train": train.to_dict(),
                "params": params,
                "counting": scored.counting,
                "val_mae": scored.value,
                **checkpoint_record(trial, s),
            },
        )
        trial.set_user_attr("checkpoint", str(ckpt))
        # The counted validation tiles come from the grid's errors: no second counting pass.
        predicted = (s.val_counts + scored.grid_errors[scored.row]).astype(np.int64)
        log_trial_artifacts(trial, result, s, scored.counting, predicted, ckpt)  # figures + checkpoint
        # The whole cost of the trial, counting and figures too: a finalist run of it costs as much.
        seconds = time.monotonic() - started
        trained = max(1, sum(not r.restored for r in result.history))  # epochs of this attempt
        trial.set_user_attr("trial_seconds", round(seconds, 1))
        trial.set_user_attr("epoch_seconds", round(seconds / trained, 2))
        discard_state(state_file(self.state_dir, trial))  # the run is done: its checkpoint is what is kept
        return scored.value

    def train(self, trial: optuna.Trial, params: dict, unet: UNetConfig, train: TrainConfig, score_fn) -> FitResult:
        """Train ``trial``'s net, continuing its run's saved state if it has one.

        A pruned or diverged run's state is removed (it ends here); a run stopped by the
        timeout keeps it for its queued copy, as does one stopped by Ctrl-C or SIGTERM, which is
        queued again here. A crash keeps it too: the same command queues the run again.
        """
        s, state = self.split, state_file(self.state_dir, trial)
        net = seeded_net(unet, train.seed, self.device)
        trial.set_user_attr("device", str(self.device))
        trial.set_user_attr("n_params", count_parameters(net))
        try:
            return fit(
                net,
                train,
                s.train_images,
                training_targets(s.train_images, s.train_masks, s.train_points, params),
                s.val_images,
                training_targets(s.val_images, s.val_masks, s.val_points, params),
                score_fn=score_fn,
                on_epoch=self.on_epoch(trial, params, train.epochs),
                every_epoch=validates_every_epoch(trial),
                state_path=state,
            )
        except (optuna.TrialPruned, FloatingPointError):
            discard_state(state)
            raise
        except KeyboardInterrupt:
            stop_at_interrupt(trial, params)
            raise

    def check_time(self, trial: optuna.Trial, params: dict, now: float) -> None:
        """Fail an optional search trial before training if its epochs would end after the deadline (see the class)."""
        if is_required(trial) or run_key(trial) is not None:
            return
        per_epoch, stop_at = self.epoch_seconds(), self.deadline(trial)
        if per_epoch is None or now + params["epochs"] * per_epoch <= stop_at:
            return
        self.out_of_time = True
        reason = (
            f"not run: its {params['epochs']} epochs (about {params['epochs'] * per_epoch:.0f} s at "
            f"{per_epoch:.1f} s each) would end after the deadline, {max(0.0, stop_at - now):.0f} s away"
        )
        raise NoTime(fail_and_requeue(trial, params, reason, queued_only=True))


def checkpoint_record(trial: optuna.Trial, split: data.Split) -> dict:
    """What the export checks a checkpoint against: its study, trial and training tile size."""
    return {
        "study": trial.study.study_name,
        "study_folder": trial.study.user_attrs[FOLDER_ATTR],
        "trial": trial.number,
        "tile_size": list(split.train_images.shape[1:]),
    }
