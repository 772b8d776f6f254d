"""Per-tile counts in the submission-format CSV (read and written), outputs written whole, and file fingerprints."""

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, check_file

__all__ = ["load_counts_csv", "counts_csv", "check_output", "write_files", "fingerprint"]


def load_counts_csv(path, n=None):
    """Load per-tile counts from an ``index,count`` CSV.

    Parameters
    ----------
    path : str or os.PathLike
        CSV in the competition submission format: a header ``index,count``
        and one row per tile, indices 0..N-1 in order. Extra columns are
        ignored.
    n : int, optional
        Expected number of rows, e.g. the number of test tiles.

    Returns
    -------
    counts : ndarray of int64, shape (N,)
        Non-negative counts, ``counts[i]`` belonging to tile ``i``.

    Raises
    ------
    DataError
        If the file is missing, unparsable or empty, lacks a column, has
        missing, non-integer or negative counts, indices other than
        0..N-1 in order, or a row count different from `n`.
    """
    path = check_file(path)
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(path, "CSV file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(path, f"cannot parse CSV ({type(err).__name__}: {err})") from err
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("index", "count") if c not in df.columns]
    if missing:
        raise DataError(
            path, f"missing column(s) {', '.join(map(repr, missing))} (found: {', '.join(map(repr, df.columns))})"
        )
    if len(df) == 0:
        raise DataError(path, "CSV has a header but no rows")
    counts = _integer_column(path, df["count"], "count")
    index = _integer_column(path, df["index"], "index")
    if not np.array_equal(index, np.arange(len(df))):
        raise DataError(path, f"index must be 0..{len(df) - 1} in order")
    if (counts < 0).any():
        raise DataError(path, "count values must be non-negative")
    if n is not None and len(counts) != n:
        raise DataError(path, f"expected {n} rows, got {len(counts)}")
    return counts


def _integer_column(path, col, name):
    """Return a CSV column as int64, refusing blanks and fractions.

    Whole-valued floats (``3.0``) are accepted since spreadsheets and
    pandas often write counts that way.
    """
    values = pd.to_numeric(col, errors="coerce")
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(path, f"{name} has a missing or non-integer value at row {row}: {col.iloc[row]!r}")
    values = values.to_numpy()
    if not np.issubdtype(values.dtype, np.integer):
        if not (np.isfinite(values).all() and (values == np.round(values)).all()):
            raise DataError(path, f"{name} values must be integers")
    return values.astype(np.int64)


def counts_csv(counts):
    """Per-tile counts in the competition's submission format, ``index,count``."""
    return "index,count\n" + "".join(f"{i},{c}\n" for i, c in enumerate(counts))


def check_output(path):
    """Refuse an output path that is a folder or lies in a missing folder."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "output is a folder; give a file name such as train.npz")
    if not path.parent.is_dir():
        raise DataError(path.parent, "output folder not found")
    return path


def write_files(contents):
    """Write every file to a temporary file beside it, then rename them into place.

    Parameters
    ----------
    contents : dict of Path to callable
        Each callable writes the file's bytes to the binary file object it is given.

    Notes
    -----
    An error or a kill while writing leaves no partial output, only the old
    files (the temporary ones are removed on errors).
    """
    temps = []
    path = None
    try:
        for path, write in contents.items():
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append(Path(temp))
            # mkstemp makes the file private (0600); outputs are ordinary data files.
            os.chmod(temp, 0o644)
            with os.fdopen(fd, "wb") as f:
                write(f)
        for temp, path in zip(temps, contents):
            os.replace(temp, path)
    except OSError as err:
        raise DataError(path, f"cannot write ({err.strerror or err})") from err
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def fingerprint(path, chunk_size=1 << 20):
    """Return the SHA-256 hex digest of a file's bytes.

    Recorded with a study so results can be traced to the exact data and
    a changed file is noticed on resume.

    Parameters
    ----------
    path : str or os.PathLike
        File to hash; read in chunks so large files use little memory.
    chunk_size : int, optional
        Bytes read at a time.

    Returns
    -------
    digest : str
        64 lowercase hex characters.

    Raises
    ------
    DataError
        If the file is missing or cannot be read.
    """
    path = check_file(path)
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(chunk_size), b""):
                h.update(chunk)
    except OSError as err:
        raise DataError(path, f"cannot read file ({err})") from err
    return h.hexdigest()
