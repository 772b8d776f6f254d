"""The one error every data problem raises, and the file checks all loaders and writers share."""

import os
from pathlib import Path

__all__ = ["DataError", "check_file", "check_distinct_outputs"]


class DataError(ValueError):
    """An input data file is missing, unreadable or has invalid contents.

    Parameters
    ----------
    path : str or os.PathLike
        The offending file.
    problem : str
        What is wrong with it.

    Notes
    -----
    ``str(err)`` is always one line, ``"<path>: <problem>"``, so it can be
    logged or shown to a user as is.
    """

    def __init__(self, path, problem):
        # Keep both in args so the error survives pickling (multiprocessing).
        super().__init__(str(path), str(problem))
        self.path = str(path)
        self.problem = str(problem)

    def __str__(self):
        return " ".join(f"{self.path}: {self.problem}".split())


def check_file(path):
    """Return `path` as a Path, or raise DataError if it is not a file."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise DataError(path, "file not found")
    if not path.is_file():
        raise DataError(path, "not a regular file")
    return path


def check_distinct_outputs(outputs, inputs):
    """Refuse an output file that is one of the inputs or another output.

    Paths are compared resolved (symbolic links followed, ``..`` removed), so
    ``./t.csv`` and ``sub/../t.csv`` are one file.

    Parameters
    ----------
    outputs, inputs : dict of str to path or None
        Files by the option that names them, e.g. ``{"--out": "t.csv"}``; None
        entries (an option not given) are skipped.

    Raises
    ------
    DataError
        Naming the file and both options, before anything is written: writing
        would destroy an input (the annotations, the true counts) or the other
        output.
    """
    seen = {Path(os.fspath(p)).resolve(): option for option, p in inputs.items() if p is not None}
    for option, path in outputs.items():
        if path is None:
            continue
        key = Path(os.fspath(path)).resolve()
        if key in seen:
            raise DataError(path, f"{option} is the same file as {seen[key]}; give another name (nothing written)")
        seen[key] = option
