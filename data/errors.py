"""The one error every data problem raises, and the file check all loaders share."""

import os
from pathlib import Path

__all__ = ["DataError", "check_file"]


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
