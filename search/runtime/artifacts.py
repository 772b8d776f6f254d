"""Where a study keeps its files, and the trial artifacts optuna-dashboard shows besides Optuna's own records.

Artifacts live in a ``FileSystemArtifactStore`` under ``studies/<name>-<id>/artifacts`` (the
study's own folder, :func:`study_dir`; its finalist study shares that store, so one dashboard
command shows both); the study prints its browse command, e.g.

    optuna-dashboard sqlite:///studies/cells.db --artifact-dir studies/cells-1a2b3c4d/artifacts --host 127.0.0.1

Every finished trial gets ``learning-curve.png``, ``val-overlay.png`` and its checkpoint
(``model.safetensors``, ``config.json``); the study's note is :mod:`search.results.note`.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

import data
from model.checkpoint import CONFIG, WEIGHTS, CheckpointError
from model.plots import learning_curve_figure, overlay_figure, save_png
from search.errors import UsageError
from search.roles import FOLDER_ATTR
from search.runtime.storage import storage_file

if TYPE_CHECKING:
    from model.train import FitResult

LEARNING_CURVE = "learning-curve.png"
VAL_OVERLAY = "val-overlay.png"
TRIAL_ARTIFACTS = (LEARNING_CURVE, VAL_OVERLAY, WEIGHTS, CONFIG)
# Study user attr: the folder the study ran in, relative to its storage file's folder (file storages only).
PROJECT_ATTR = "project_from_storage"


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
    """Where a study's artifacts are stored: beside the checkpoints of the search it belongs to.

    A finalist study's folder lies inside its search's; both upload to the search's store,
    since optuna-dashboard reads one ``--artifact-dir``.
    """
    return Path("studies") / Path(study.user_attrs[FOLDER_ATTR]).parts[0] / "artifacts"


def record_project(study: optuna.Study, storage_url: str) -> None:
    """Record the folder the study runs in, relative to its storage file, unless it has one.

    Checkpoint and artifact paths are relative to that folder; recorded relative to the file, they
    are found from any working folder, and after the project folder moved with its studies.
    """
    file = storage_file(storage_url)
    if file is not None and PROJECT_ATTR not in study.user_attrs:
        study.set_user_attr(PROJECT_ATTR, os.path.relpath(Path.cwd(), file.resolve().parent))


def project_dir(attrs: dict, storage_url: str) -> Path:
    """The folder that the relative checkpoint and artifact paths of a study start from.

    Parameters
    ----------
    attrs : dict
        The study's user attributes (:func:`record_project`).
    storage_url : str
        The URL the study was opened with, here.

    Returns
    -------
    Path
        Found from the storage file for a SQLite or journal study; this folder for a
        database server's study, or a study recorded before the project folder was.
    """
    file = storage_file(storage_url)
    if file is None or PROJECT_ATTR not in attrs:
        return Path(".")
    return Path(os.path.normpath(file.resolve().parent / attrs[PROJECT_ATTR]))


def study_folder(study: optuna.Study, storage_url: str, of: optuna.Study | None = None) -> Path:
    """The folder of ``of`` (default: ``study``, whose project folder it records) as an absolute path.

    Found from the storage like the checkpoints, so that every worker and every later command
    finds it from any working folder.
    """
    return (project_dir(study.user_attrs, storage_url) / study_dir(of or study)).resolve()


def states_dir(study: optuna.Study, storage_url: str, of: optuna.Study | None = None) -> Path:
    """Where the running trials of ``of`` (default: ``study``) keep their saved states: in its folder."""
    return study_folder(study, storage_url, of) / "resume"


def training_file(attrs: dict, project: Path, otherwise: str) -> Path:
    """The study's training file, found as the study recorded it and checked to be the same file.

    Parameters
    ----------
    attrs : dict
        The study's user attributes: ``train_path`` as given to the study (relative to the
        folder it ran in) and ``train_fingerprint``.
    project : Path
        That folder here (:func:`project_dir`): a relative ``train_path`` starts from it, not
        from the working folder, which may hold another ``train.npz``.
    otherwise : str
        What the user can do instead, ending the one-line refusal.

    Raises
    ------
    UsageError
        If the file is not there, or its bytes are not those the study trained on.
    """
    path = project / attrs["train_path"]  # an absolute train_path stays itself
    if not path.is_file():
        raise UsageError(f"the study's training file {path} is not found; {otherwise}")
    if data.fingerprint(path) != attrs["train_fingerprint"]:
        raise UsageError(f"the study's training file {path} changed since the study started; {otherwise}")
    return path


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
                overlay_figure(split.val_images, result.val_prob, counting.get("threshold"), split.val_counts, pred),
                Path(tmp) / VAL_OVERLAY,
            ),
        ]
        # upload_artifact copies the file into the store, so the temporary files can go.
        for path in [*figures, Path(checkpoint) / WEIGHTS, Path(checkpoint) / CONFIG]:
            upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)


def read_checkpoint_artifacts(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, store_dir: Path
) -> tuple[bytes, bytes, tuple[str, str]]:
    """The checkpoint that :func:`log_trial_artifacts` uploaded for ``trial`` to the store in ``store_dir``.

    Returns
    -------
    config, weights : bytes
        The contents of ``config.json`` and ``model.safetensors``, unchecked
        (:func:`model.checkpoint.checkpoint_from_bytes` checks them).
    names : tuple of str
        Where each came from, for messages.

    Raises
    ------
    CheckpointError
        If the trial has no such artifact, or its file is gone from the store or unreadable.
    """
    # A file uploaded twice (a retried upload) is its last upload.
    ids = {m.filename: m.artifact_id for m in get_all_artifact_meta(trial, storage=study._storage)}
    store = FileSystemArtifactStore(store_dir)
    contents, names = [], []
    for filename in (CONFIG, WEIGHTS):
        try:
            with store.open_reader(ids[filename]) as reader:
                contents.append(reader.read())
        except (KeyError, ArtifactNotFound, OSError):
            raise CheckpointError(f"no copy of {filename} in the artifact store {store_dir} either") from None
        names.append(f"artifact {filename} ({ids[filename]}) in {store_dir}")
    return contents[0], contents[1], (names[0], names[1])
