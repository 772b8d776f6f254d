"""What the three commands (study, export, report) share: their study options and error handling.

Every bad input ends as one line on stderr and exit code 2; a finished result is never lost.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

import optuna

import data
from model.device import pick_device
from search.errors import Failed, UsageError
from search.roles import FOLDER_ATTR
from search.runtime.artifacts import study_folder
from search.runtime.storage import STORAGE_ENV, storage_files

STORAGE_HELP = (
    "sqlite:///FILE.db, journal:///FILE.log (or FILE.log) or a database URL such as "
    f"postgresql://user:password@host/db (default: ${STORAGE_ENV}, else {{default}})"
)


def parser(prog: str, description: str, default_storage: str, device: bool = True) -> argparse.ArgumentParser:
    """An argument parser whose group "study" holds ``--study-name``, ``--storage`` and, if asked, ``--device``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    study = p.add_argument_group("study")
    study.add_argument(
        "--study-name", default="cells", help="study name: letters, digits, '_', '-' and '.' (default: %(default)s)"
    )
    study.add_argument("--storage", help=STORAGE_HELP.format(default=default_storage))
    if device:
        study.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    return p


def add_model_choice(p: argparse.ArgumentParser, verb: str) -> None:
    """``--trial N`` or ``--finalist N``: which models of a study ``verb`` uses (see ``search.members.choose``)."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, help=f"{verb} this search trial's model alone")
    which.add_argument(
        "--finalist",
        type=int,
        help=f"{verb} the models of the finalist of this search trial number (e.g. the reference's)",
    )


def interval_level(text: str) -> float:
    """An interval's coverage: 0 (no intervals) or a level between 0 and 1."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError("must be 0 (no intervals) or a level between 0 and 1, e.g. 0.9")
    return value


def add_interval(p: argparse.ArgumentParser) -> None:
    """``--interval LEVEL``: the coverage of every count's prediction interval (CV+), 0 for none."""
    p.add_argument(
        "--interval",
        type=interval_level,
        default=0.9,
        metavar="LEVEL",
        help="coverage of each count's prediction interval, from the finalists' out-of-fold residuals "
        "(default: %(default)s; 0: none)",
    )


def resolve_device(name: str):
    """The torch device ``--device`` names; UsageError for one that is unknown or absent."""
    try:
        return pick_device(name)
    except ValueError as exc:
        raise UsageError(f"--device: {exc}") from None


def check_output_file(path: str | os.PathLike, option: str) -> Path:
    """Refuse a file to write unless it could be written, before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The file; missing parent folders are created when it is written.
    option : str
        The option that named it, e.g. ``"--out"``, for the message.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    UsageError
        If ``path`` is a folder, or the nearest of its parents that exists is a file
        or a folder this process cannot write in.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    _check_creatable(path.parent, option, path)
    return path


def check_output_dir(path: str | os.PathLike, option: str) -> Path:
    """Refuse a folder to write files into unless they could be written, before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The folder; it and its missing parents are created when files are written.
    option : str
        The option that named it, e.g. ``"--out"``, for the message.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    UsageError
        If ``path`` exists and is not a folder, or the nearest of it and its parents that
        exists is a file or a folder this process cannot write in.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: exists and is not a folder")
    _check_creatable(path, option, path)
    return path


def beside(out: Path, suffix: str, what: str) -> Path:
    """The file written beside a CSV ``--out``: its name with ``suffix``.

    Parameters
    ----------
    out : Path
        The CSV.
    suffix : str
        The companion file's suffix, e.g. ``".json"``.
    what : str
        What the companion holds, for the message, e.g. ``"its log"``.

    Returns
    -------
    Path

    Raises
    ------
    UsageError
        If ``out`` already ends in ``suffix``: the companion would overwrite it.
    """
    path = Path(out).with_suffix(suffix)
    if path == Path(out):
        raise UsageError(f"--out {out}: the output is a CSV and {what} is written to {path}; give a .csv name")
    return path


def check_spares_study(outputs: dict[str, Path | None], storage_url: str, study: optuna.Study) -> None:
    """Refuse an output that would overwrite the study: its storage, a file beside it, or its folder's files.

    Parameters
    ----------
    outputs : dict of str to Path or None
        Files or folders to write, by the option that names them; None (not given) is skipped.
    storage_url : str
        The study's storage: a SQLite database or journal file and the lock and journal files
        its database writes beside it (``search.runtime.storage.storage_files``).
    study : optuna.Study
        The study: nothing may be written in its folder of checkpoints and artifacts.

    Raises
    ------
    UsageError
        Naming the option, before anything is written.
    """
    storage = {p.resolve() for p in storage_files(storage_url)}
    attrs = study.user_attrs
    folder = study_folder(study, storage_url) if FOLDER_ATTR in attrs else None
    for option, path in outputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in storage:
            raise UsageError(f"{option} {path}: is the study's storage; give another name (nothing written)")
        if folder is not None and resolved.is_relative_to(folder):
            raise UsageError(f"{option} {path}: is in the study's folder {folder}; give another name (nothing written)")


def _check_creatable(folder: Path, option: str, path: Path) -> None:
    """Refuse ``path`` unless ``folder``, or its nearest parent that exists, is a folder we may write in."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())  # "." or "/" at the latest
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: no permission to write in {existing}")


def stop_on_signal(signum, frame) -> None:
    """SIGINT or SIGTERM: stop the work as Ctrl-C does, once; further signals wait for it to stop cleanly."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def run_command(work: Callable[[], object], interrupted: str = "interrupted") -> int:
    """Run ``work``; bad input is one line and exit 2, a failure exit 1, Ctrl-C or SIGTERM exit 130.

    SIGTERM (job schedulers, ``docker stop``, systemd) stops the work as Ctrl-C does: the
    running trial saves where it stands and is queued again, instead of staying RUNNING.
    """
    signals = (signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread() else ()
    before = {sig: signal.signal(sig, stop_on_signal) for sig in signals}
    try:
        work()
    except (UsageError, data.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return 130
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    return 0
