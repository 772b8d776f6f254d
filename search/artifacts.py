"""What optuna-dashboard shows besides Optuna's own records: trial artifacts and the study note.

Artifacts live in a ``FileSystemArtifactStore`` under ``studies/<name>-<id>/artifacts`` (the
study's own folder, :func:`study_dir`); the study prints its browse command, e.g.

    optuna-dashboard sqlite:///studies/cells.db --artifact-dir studies/cells-1a2b3c4d/artifacts --host 127.0.0.1

Every finished trial gets ``learning-curve.png``, ``val-overlay.png`` and its checkpoint
(``model.safetensors``, ``config.json``); the study gets a Markdown note on its data, profile
and seed-baseline score.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna_dashboard import get_note, save_note

from model.checkpoint import CONFIG, WEIGHTS
from model.plots import learning_curve_figure, overlay_figure, save_png
from search.verdict import baseline_line, gain_line

if TYPE_CHECKING:
    from model.train import FitResult
    from search.space import Profile

LEARNING_CURVE = "learning-curve.png"
VAL_OVERLAY = "val-overlay.png"
TRIAL_ARTIFACTS = (LEARNING_CURVE, VAL_OVERLAY, WEIGHTS, CONFIG)
FOLDER_ATTR = "folder"  # study user attr: its folder under studies/, see study_dir


def ensure_study_dir(study: optuna.Study) -> None:
    """Name the study's folder ``<name>-<8 random hex digits>`` unless it has one."""
    if FOLDER_ATTR not in study.user_attrs:
        study.set_user_attr(FOLDER_ATTR, f"{study.study_name}-{secrets.token_hex(4)}")


def study_dir(study: optuna.Study) -> Path:
    """Where a study's checkpoints and artifacts live: ``studies/<name>-<id>``.

    The id is drawn once, when the folder is named (:func:`ensure_study_dir`), and stored in the
    study: a study of the same name in another storage, or one created again after its database
    was deleted, never writes into this folder, however its storage URL is spelled.
    """
    return Path("studies") / study.user_attrs[FOLDER_ATTR]


def artifact_dir(study: optuna.Study) -> Path:
    """Where a study's artifacts are stored, beside its checkpoints."""
    return study_dir(study) / "artifacts"


def open_artifact_store(study: optuna.Study) -> FileSystemArtifactStore:
    """The study's artifact store, its folder created."""
    directory = artifact_dir(study)
    directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(directory)


def log_trial_artifacts(
    trial: optuna.Trial, result: FitResult, split, counting: dict, pred: np.ndarray, checkpoint: Path
) -> None:
    """Record a finished trial's validation counts and upload its figures and checkpoint.

    Parameters
    ----------
    trial : optuna.Trial
        The running trial; the files go to its study's store (:func:`artifact_dir`).
    result : FitResult
        The trial's training result (learning curve, last-epoch validation probabilities).
    split : data.Split
        The study's split (validation tiles and true counts).
    counting : dict
        The trial's chosen counting setting.
    pred : ndarray of int, shape (N,)
        The validation tiles counted with ``counting``.
    checkpoint : Path
        The folder :func:`model.checkpoint.save_checkpoint` wrote.
    """
    store = open_artifact_store(trial.study)
    # Per-tile counts let the report draw true against predicted without the data or the net.
    trial.set_user_attr("val_counts", {"true": [int(c) for c in split.val_counts], "pred": [int(c) for c in pred]})
    with tempfile.TemporaryDirectory() as tmp:
        figures = [
            save_png(learning_curve_figure(result.history), Path(tmp) / LEARNING_CURVE),
            save_png(
                overlay_figure(split.val_images, result.val_prob, counting["threshold"], split.val_counts, pred),
                Path(tmp) / VAL_OVERLAY,
            ),
        ]
        # upload_artifact copies the file into the store, so the temporary files can go.
        for path in [*figures, Path(checkpoint) / WEIGHTS, Path(checkpoint) / CONFIG]:
            upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)


class StudyNote:
    """The study's dashboard note: data, split, profile, the seed baseline and the gain over it.

    Call :meth:`ensure` when a run starts (it writes the note of a new study); as a study callback
    it rewrites the note when the baseline or a new best trial ends, so edits made in the dashboard
    last only until then.

    Parameters
    ----------
    n_train, n_val : int
        Tiles in the training and validation parts of the split.
    true_counts : str
        Where the true counts come from.
    split_rule : str
        How tiles were kept together across the split (source images found or stored).
    profile : Profile
        The study's search profile.
    """

    def __init__(self, n_train: int, n_val: int, true_counts: str, split_rule: str, profile: Profile):
        self.n_train, self.n_val, self.true_counts, self.profile = n_train, n_val, true_counts, profile
        self.split_rule = split_rule

    def body(self, study: optuna.Study) -> str:
        """The note's Markdown for ``study`` as it stands."""
        meta, p = study.user_attrs, self.profile
        lines = [
            f"## Study `{study.study_name}`",
            f"Objective: minimise **{meta.get('objective', 'val_count_mae')}** (validation count-MAE), "
            f"counting objective `{meta.get('counting_objective', '?')}`.",
            "",
            "### Data",
            f"- training file: `{meta.get('train_path')}` (sha256 `{str(meta.get('train_fingerprint'))[:12]}…`)",
            f"- {self.n_train + self.n_val} tiles: {self.n_train} training, {self.n_val} validation "
            f"(validation fraction {meta.get('val_fraction')}, seed {meta.get('seed')})",
            f"- split {self.split_rule}",
            f"- true counts: {self.true_counts}",
            "",
            "### Profile",
            f"- `{p.name}`: U-Net base width {p.base}, epochs {p.epochs[0]}-{p.epochs[1]}, "
            f"default budget {p.n_trials} trials / {p.timeout:.0f} s",
            "",
            "### Seed baseline",
            f"- {baseline_line(study)}",
            f"- {gain_line(study)}",
        ]
        return "\n".join(lines) + "\n"

    def write(self, study: optuna.Study) -> None:
        save_note(study, self.body(study))

    def ensure(self, study: optuna.Study) -> None:
        """Write the note unless the study has one (a resumed study keeps its note until a rewrite)."""
        if not get_note(study):
            self.write(study)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # The baseline's score and the gain over it change only when these trials end.
        new_best = trial.state == optuna.trial.TrialState.COMPLETE and study.best_trial.number == trial.number
        if trial.user_attrs.get("baseline") or new_best:
            self.write(study)
