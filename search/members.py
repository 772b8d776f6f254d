"""The models a study's submission is made of, and their checkpoints, checked to be theirs.

By default, every finalist's search trial and fold runs, weighted out of fold (:func:`choose`); with
``--trial`` one trial alone, with ``--finalist`` that finalist's models. ``search.export`` and
``search.predict`` both load them here, refusing a checkpoint that another study or trial wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

import data
from model.checkpoint import CONFIG, WEIGHTS, CheckpointError, checkpoint_from_bytes, load_checkpoint
from search.errors import UsageError
from search.results import stats
from search.results.blend import Blend, stage_blend
from search.results.verdict import Finalist, common_folds, stage_verdict
from search.roles import COMPLETE, EARLIER, FOLDER_ATTR, run_key, trial_label
from search.runtime.artifacts import artifact_dir, read_checkpoint_artifacts
from search.stages import finalists


@dataclass
class Member:
    """One model of a submission: a complete trial of the search or of its finalist study."""

    study: optuna.Study  # the study the trial belongs to
    trial: optuna.trial.FrozenTrial

    @property
    def label(self) -> str:
        return trial_label(self.trial)

    @property
    def key(self) -> tuple[int, int | None]:
        """``(finalist trial, fold)`` of a fold run, ``(trial, None)`` of a search trial: its place in a blend."""
        run = run_key(self.trial)
        return (self.trial.number, None) if run is None else run[:2]


@dataclass
class Choice:
    """What a submission exports: the models whose counts are averaged, and why them."""

    members: list[Member]
    source: int  # the search trial whose configuration the models share
    what: str  # e.g. "trial 3 alone", "trial 3's search model and 2 fold models"
    score: str  # e.g. "val MAE 1.234", "out-of-fold MAE 1.234": what is known of its error
    mae: float
    blend: Blend | None = None  # weights, counting and intervals chosen out of fold; None: the rounded mean


def pick_trial(study: optuna.Study, number: int | None) -> optuna.trial.FrozenTrial:
    """The best finished trial, or trial ``number`` if it finished."""
    complete = {t.number: t for t in study.get_trials(deepcopy=False, states=(COMPLETE,))}
    if not complete:
        raise UsageError(f"study {study.study_name!r} has no finished trial yet: run python -m search.study first")
    if number is None:
        return study.best_trial
    if number not in complete:
        raise UsageError(f"trial {number} of study {study.study_name!r} did not finish (finished: {sorted(complete)})")
    return complete[number]


def single(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Choice:
    return Choice([Member(study, trial)], trial.number, f"trial {trial.number} alone", "val MAE", trial.value)


def ensemble(study: optuna.Study, finalist: Finalist, folds: list[int]) -> Choice:
    """The finalist's search trial and its fold runs; its score is the out-of-fold MAE over ``folds``.

    No image is held out from all of them, so the ensemble's own error is unknown: the
    out-of-fold MAE of its fold models is the honest figure, and averaging rarely does worse.
    """
    staged = finalists.open_finalists(study)
    search = [Member(study, study.trials[finalist.trial])]
    members = search + [Member(staged, run) for _, run in sorted(finalist.runs.items())]
    what = f"trial {finalist.trial}'s search model and {len(members) - 1} fold models"
    return Choice(members, finalist.trial, what, "out-of-fold MAE", finalist.oof_mae(folds))


def no_verdict(staged: list[Finalist]) -> str:
    """Why there is no finalist verdict: no stage has run (``--finalists 0``, or not yet), or no common fold."""
    if not staged:
        return "no finalist stage has run"
    planned = [f for f in staged if f.role != EARLIER]
    if all(len(f.runs) + len(f.diverged) >= f.folds for f in planned):  # diverged runs are not tried again
        return "no finalist comparison: the stage ended with no fold every finalist finished (runs diverged)"
    return (
        "no finalist comparison yet (no fold has a finished run of every finalist; "
        "run python -m search.study to finish the stage)"
    )


def choose(study: optuna.Study, trial: int | None, finalist: int | None) -> Choice:
    """The models to export: ``--trial``, ``--finalist``, else the winning finalist, else the best trial."""
    if trial is not None:
        return single(study, pick_trial(study, trial))
    staged = finalists.results(study)
    if finalist is not None:
        match = [f for f in staged if f.trial == finalist and f.runs]
        if not match:
            raise UsageError(
                f"trial {finalist} of study {study.study_name!r} is no finalist with a finished run "
                f"(finalists with runs: {[f.trial for f in staged if f.runs]}); use --trial to export it alone"
            )
        folds = common_folds([f for f in staged if f.role != EARLIER])
        one = ensemble(study, match[0], [k for k in folds if k in match[0].runs] or sorted(match[0].runs))
        return with_blend(one, stage_blend(staged, only=finalist))
    verdict = stage_verdict(staged)
    if verdict is None:
        best = single(study, pick_trial(study, None))
        print(f"{no_verdict(staged)}: exporting {best.what}")
        return best
    return weighted(study, staged, stage_blend(staged))


def with_blend(choice: Choice, blend: Blend | None) -> Choice:
    """``choice`` counted as ``blend`` says, scored as it is; unchanged without one."""
    if blend is not None:
        choice.blend = blend
        choice.score, choice.mae = blend.score()
    return choice


def weighted(study: optuna.Study, staged: list[Finalist], blend: Blend) -> Choice:
    """The search and fold models of every finalist the blend weighs, heaviest first."""
    used = sorted(blend.used(), key=lambda t: -blend.weight(t))
    by_trial = {f.trial: f for f in staged}
    parts = [ensemble(study, by_trial[t], blend.folds) for t in used]
    shares = ", ".join(f"trial {t} {blend.weight(t):.3f}" for t in used)
    what = f"the finalists weighted out of fold ({shares}): their search and fold models"
    what += f"; the count is {blend.calibration.text()}"
    members = [m for part in parts for m in part.members]
    return with_blend(Choice(members, used[0], what, "", float("nan")), blend)


def blend_counts(choice: Choice, counts: np.ndarray, level: float, area=1.0, whole: bool = False) -> tuple:
    """The submission's counts of new items from its members' counts (M, T), and their intervals.

    With a blend, its weights and counting (``area``: an item's size in tiles) and, at ``level``
    above 0, its CV+ intervals ``(low, high)``; without one, the rounded mean and no intervals (None).
    """
    if choice.blend is None:
        return stats.ensemble_counts(counts), None
    keys = [m.key for m in choice.members]
    final = choice.blend.counts(counts, keys, area)
    return final, (choice.blend.intervals(counts, keys, level, area, whole) if level > 0 else None)


def check_owner(study: optuna.Study, trial: optuna.trial.FrozenTrial, config: dict) -> None:
    """Refuse a checkpoint that another study or trial wrote, or that lacks what is read from it.

    A checkpoint records its study folder, trial number, parameters and training tile size
    (``search.stages.objective.checkpoint_record``); a folder overwritten by another study, or a copied
    one, would otherwise be exported with exit code 0.
    """
    missing = [k for k in ("tile_size", "train") if k not in config]
    if missing:
        raise UsageError(f"checkpoint {trial.user_attrs['checkpoint']}: config.json lacks {', '.join(missing)}")
    recorded = (config.get("study_folder"), config.get("trial"), config.get("params"))
    if recorded != (study.user_attrs.get(FOLDER_ATTR), trial.number, trial.params):
        raise UsageError(
            f"checkpoint {trial.user_attrs['checkpoint']} does not belong to trial {trial.number} of "
            f"study {study.study_name!r} (it records trial {config.get('trial')} of "
            f"{config.get('study_folder')}); run the trial again or export another one"
        )


def check_checkpoint(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, config: dict, test_path: Path, images: np.ndarray
) -> None:
    """Refuse a checkpoint as :func:`check_owner` does, or test tiles of another size."""
    check_owner(study, trial, config)
    tile = list(images.shape[1:])
    if tile != config["tile_size"]:
        raise data.DataError(
            test_path,
            f"tiles are {tile[0]}x{tile[1]}, but trial {trial.number} was trained "
            f"on {config['tile_size'][0]}x{config['tile_size'][1]} tiles",
        )


def open_checkpoint(member: Member, project: Path, device) -> tuple:
    """The member's net, checkpoint config and where they were read from.

    Its checkpoint folder, under ``project`` (:func:`search.runtime.artifacts.project_dir`); when a file
    of it is missing here (trained on another machine, or deleted), the copy uploaded to the
    study's artifact store, checked against the same SHA-256.
    """
    folder = project / member.trial.user_attrs.get("checkpoint", "")
    missing = [folder / name for name in (CONFIG, WEIGHTS) if not (folder / name).is_file()]
    if not missing:
        return *load_checkpoint(folder, device), folder
    try:
        config, weights, names = read_checkpoint_artifacts(
            member.study, member.trial, project / artifact_dir(member.study)
        )
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint file missing: {missing[0]}, and {exc}") from None
    return *checkpoint_from_bytes(config, weights, names, device), names[1]


def open_member(member: Member, project: Path, device) -> tuple:
    """The member's net, checkpoint config and source, checked to belong to its trial (:func:`check_owner`)."""
    try:
        net, config, source = open_checkpoint(member, project, device)
    except CheckpointError as exc:
        raise UsageError(f"{member.label}: {exc}") from None
    check_owner(member.study, member.trial, config)
    return net, config, source


def load_member(member: Member, project: Path, test_path: Path, images: np.ndarray, device) -> tuple:
    """The member's net, checkpoint config and source, checked to belong to its trial and to fit the test tiles."""
    net, config, source = open_member(member, project, device)
    check_checkpoint(member.study, member.trial, config, test_path, images)
    return net, config, source
