"""Read arrays from npz archives safely: the file's format, array sizes and .npy headers checked first.

Every problem is reported as a :class:`DataError` naming the file, so a bad archive fails with a
one-line message instead of a pickle warning, a zip traceback or an allocation of many GB.
"""

import math
import zipfile
import zlib

import numpy as np

from .errors import DataError, check_file

__all__ = ["MAX_MEMBER_BYTES", "npz_keys", "read_npz"]

# Largest uncompressed array read from an npz archive (4 GiB), checked in the
# zip header before reading: a small archive can decompress to many GB. The
# competition's training arrays are well under 1 GiB each.
MAX_MEMBER_BYTES = 4 << 30

# Everything np.load / NpzFile can raise on a file that is not a sound npz.
# NpzFile reads members lazily, so these also surface when an array is read.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    ValueError,
    OSError,
    EOFError,
    RuntimeError,
    NotImplementedError,
)

# The .npy header versions numpy reads publicly; it writes 3.0 only for non-Latin-1 field
# names, which no tile array has.
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def read_npz(path, keys):
    """Read the arrays `keys` from the npz archive at `path`.

    Arrays are read inside the ``try`` because NpzFile only decompresses
    members on access: a truncated archive may open fine and fail later.
    """
    path = check_file(path)
    try:
        # Own the file handle: np.load leaks it when given a path to a
        # broken zip.
        with open(path, "rb") as f:
            return _read_npz_file(path, f, keys)
    except OSError as err:
        raise DataError(path, f"cannot read file ({err})") from err


def _read_npz_file(path, f, keys):
    """Body of :func:`read_npz` for an open binary file `f`."""
    # Sniff the magic bytes first: np.load would treat any other file as a
    # pickle and give a confusing message about allow_pickle.
    magic = f.read(6)
    f.seek(0)
    if magic.startswith(b"\x93NUMPY"):
        raise DataError(path, "not an .npz archive (it holds a single .npy array)")
    if not magic.startswith(b"PK"):
        raise DataError(path, "not a valid .npz archive (no zip signature; empty, text or another format?)")
    _check_member_sizes(path, f, keys)
    try:
        npz = np.load(f, allow_pickle=False)
    except _READ_ERRORS as err:
        raise DataError(path, f"not a valid .npz archive, corrupt or truncated ({type(err).__name__}: {err})") from err
    with npz:
        missing = [k for k in keys if k not in npz.files]
        if missing:
            found = ", ".join(map(repr, npz.files)) or "none"
            raise DataError(path, f"missing key(s) {', '.join(map(repr, missing))} (found: {found})")
        try:
            return {k: np.asarray(npz[k]) for k in keys}
        except _READ_ERRORS as err:
            # Also reached for object arrays, refused by allow_pickle=False.
            raise DataError(
                path, f"cannot read arrays, .npz archive corrupt, truncated or pickled ({type(err).__name__}: {err})"
            ) from err


def _check_member_sizes(path, f, keys):
    """Refuse an array of `keys` over MAX_MEMBER_BYTES, or one whose .npy header is unreadable.

    Two sizes are checked, before anything is allocated: the uncompressed size in the zip
    directory, and the shape times item size that the array's .npy header declares (np.load
    allocates that much before it reads any data, however small the member). Only the headers
    are decompressed. An archive zipfile cannot open is left for np.load to report.
    """
    try:
        archive = zipfile.ZipFile(f)
    except _READ_ERRORS:
        f.seek(0)
        return
    wanted = {f"{k}.npy" for k in keys}
    try:
        for info in archive.infolist():
            if info.filename in wanted:
                key = info.filename[:-4]
                _check_size(path, key, info.file_size, "uncompressed")
                shape, dtype = _npy_header(path, archive, info)
                _check_size(path, key, math.prod(shape) * dtype.itemsize, f"as its header declares ({shape}, {dtype})")
    finally:
        archive.close()  # leaves `f` open: zipfile only closes files it opened itself
        f.seek(0)


def _check_size(path, key, nbytes, how):
    """Refuse array `key` of `nbytes` bytes (found `how`) when over MAX_MEMBER_BYTES."""
    if nbytes > MAX_MEMBER_BYTES:
        raise DataError(
            path,
            f"array {key!r} would take {nbytes / 2**30:.1f} GiB {how}, over the {MAX_MEMBER_BYTES / 2**30:g} GiB limit",
        )


def _npy_header(path, archive, info):
    """The shape and dtype that member `info`'s .npy header declares, its data left unread."""
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in _HEADER_READERS:
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
            shape, _, dtype = _HEADER_READERS[version](member)
    except _READ_ERRORS as err:
        raise DataError(
            path, f"array {info.filename[:-4]!r} has an unreadable .npy header, archive corrupt or truncated ({err})"
        ) from err
    return shape, dtype


def npz_keys(path):
    """The array names of the npz archive at `path`, which is checked as :func:`read_npz` checks it."""
    read_npz(path, [])
    with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
        return npz.files
