"""Load and validate the tile arrays of npz archives.

Every problem with an input file is reported as a :class:`DataError` whose
message is a single line naming the file and what is wrong with it, so a
study fails early with an actionable message instead of deep inside
training.
"""

import math
import zipfile
import zlib

import numpy as np

from .errors import DataError, check_file

__all__ = [
    "load_train",
    "load_train_or_dots",
    "load_points",
    "point_counts",
    "check_dot_counts",
    "load_tile_ints",
    "load_scales",
    "load_test",
]

# The U-Net halves the resolution up to 4 times; sizes that do not divide
# evenly would break the skip connections.
SIZE_MULTIPLE = 16

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


def _read_npz(path, keys):
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
    """Body of :func:`_read_npz` for an open binary file `f`."""
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


def _check_stack(path, key, arr):
    """Check that `arr` is a non-empty (N, H, W) stack; return it 3-D.

    A trailing singleton channel, (N, H, W, 1), is accepted and dropped
    because it is a common way to save grayscale stacks for Keras.
    """
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise DataError(path, f"{key} must be 3-D (N, H, W) or (N, H, W, 1), got shape {arr.shape}")
    if 0 in arr.shape:
        raise DataError(path, f"{key} is empty, shape {arr.shape}")
    h, w = arr.shape[1:]
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise DataError(path, f"{key} tiles are {h}x{w}; height and width must be multiples of {SIZE_MULTIPLE}")
    return arr


def _check_images(path, X):
    """Validate an image stack and return it as uint8 (N, H, W)."""
    X = _check_stack(path, "X", X)
    if X.dtype == np.uint8:
        return X
    if not np.issubdtype(X.dtype, np.integer):
        # Floats are refused rather than guessed at: they may be 0..1 or
        # 0..255 scaled, and a wrong guess silently ruins training.
        raise DataError(
            path, f"X must be uint8 or integers in 0..255, got dtype {X.dtype} (float images are not accepted)"
        )
    lo, hi = X.min(), X.max()
    if lo < 0 or hi > 255:
        raise DataError(path, f"X values must be in 0..255, got range {lo}..{hi}")
    return X.astype(np.uint8)


def _check_masks(path, y):
    """Validate a soft-mask stack and return it as float32 (N, H, W)."""
    y = _check_stack(path, "y", y)
    if not (np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise DataError(path, f"y must be numeric, got dtype {y.dtype}")
    # Check before casting: float64 values beyond float32 would become inf.
    if not np.isfinite(y).all():
        raise DataError(path, "y contains NaN or inf values")
    lo, hi = y.min(), y.max()
    if lo < 0 or hi > 1:
        raise DataError(path, f"y values must be in [0, 1], got range [{lo}, {hi}]")
    return y.astype(np.float32)


def load_train(path):
    """Load and validate a training archive.

    Parameters
    ----------
    path : str or os.PathLike
        An ``.npz`` file with arrays ``X`` (images) and ``y`` (soft masks),
        as in the Kaggle "Counting Cells in Microscopy Images" layout.
        Other arrays in the archive are ignored.

    Returns
    -------
    X : ndarray of uint8, shape (N, H, W)
        Grayscale images. Any integer dtype with values in 0..255 is
        converted; float images are refused.
    y : ndarray of float32, shape (N, H, W)
        Fraction of each pixel covered by nucleus, in [0, 1].

    Raises
    ------
    DataError
        If the file is missing or not a readable npz, lacks ``X`` or ``y``,
        or the arrays are not matching non-empty (N, H, W) stacks (a
        trailing singleton channel is dropped) of square tiles with H and W
        multiples of 16, ``X`` within 0..255 and ``y`` finite within [0, 1],
        or an array is larger than ``MAX_MEMBER_BYTES`` uncompressed.
    """
    arrays = _read_npz(path, ["X", "y"])
    X = _check_images(path, arrays["X"])
    y = _check_masks(path, arrays["y"])
    if X.shape != y.shape:
        raise DataError(path, f"X and y shapes do not match: {X.shape} vs {y.shape}")
    return _check_square(path, X), y


def _check_square(path, X):
    """Return training tiles `X`, refusing tiles that are not square."""
    if X.shape[1] != X.shape[2]:
        # Augmentation rotates tiles by 90 degrees, which needs square tiles.
        raise DataError(path, f"training tiles must be square, got {X.shape[1]}x{X.shape[2]}")
    return X


def _keys(path):
    """The array names of the npz archive at `path`, which is checked as :func:`_read_npz` checks it."""
    _read_npz(path, [])
    with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
        return npz.files


def load_train_or_dots(path):
    """Load a training archive with soft masks ``y``, or, without them, dots ``points``.

    A file with ``y`` trains from its masks as :func:`load_train` reads them (any
    ``points`` beside them are not read); a file without ``y`` trains from its
    ``points``, one per cell (the importer's ``--dots`` and ``--dots-csv`` files).

    Parameters
    ----------
    path : str or os.PathLike
        The training ``.npz`` archive.

    Returns
    -------
    X : ndarray of uint8, shape (N, H, W)
    y : ndarray of float32, shape (N, H, W), or None for a dots file
    points : ndarray of float64, shape (M, 3), or None for a mask file
        ``(tile, row, col)`` of every cell, checked by :func:`load_points`.

    Raises
    ------
    DataError
        As :func:`load_train` for a mask file; for a dots file, as :func:`load_points`,
        for ``X`` as :func:`load_train`, and when it has no point at all; for a file
        with neither ``y`` nor ``points``.
    """
    keys = _keys(path)
    if "y" in keys:
        return (*load_train(path), None)
    if "points" not in keys:
        found = ", ".join(map(repr, keys)) or "none"
        raise DataError(path, f"nothing to train on: no 'y' (soft masks) and no 'points' (dots) (found: {found})")
    X = _check_square(path, _check_images(path, _read_npz(path, ["X"])["X"]))
    points = load_points(path, len(X), X.shape[1:])
    if len(points) == 0:
        # Every true count would be 0: a study would learn blank targets and score val MAE 0.000.
        raise DataError(path, "'points' is empty: a dots file needs at least one dot (one per cell) to train on")
    return X, None, points


def load_points(path, n, shape):
    """Load the optional ``points`` array: one row ``(tile, row, col)`` per cell.

    Coordinates are in tile pixels, pixel centres at integers, as the importer
    writes them (see :mod:`data.tiling`): a cell lies in tile ``tile`` at
    ``row`` in [0, H) and ``col`` in [0, W).

    Parameters
    ----------
    path : str or os.PathLike
        The training ``.npz`` archive.
    n : int
        Number of tiles.
    shape : tuple of int
        ``(H, W)`` of a tile.

    Returns
    -------
    points : ndarray of float64, shape (M, 3), or None when the archive has no ``points``.

    Raises
    ------
    DataError
        If ``points`` is not an integer or float (M, 3) array of finite values whose tile
        column holds whole numbers in [0, n) and whose rows and columns lie in
        the tile.
    """
    path = check_file(path)
    if "points" not in _keys(path):
        return None
    points = _read_npz(path, ["points"])["points"]
    numeric = np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer)
    if points.ndim != 2 or points.shape[1] != 3 or not numeric:
        raise DataError(path, f"'points' must be an (M, 3) array of reals, got {points.dtype} of shape {points.shape}")
    # float64 holds every float32 and int32 exactly: the range checks below see the file's values.
    points = points.astype(np.float64)
    if not np.isfinite(points).all():
        raise DataError(path, "'points' contains NaN or inf values")
    tile, where = points[:, 0], points[:, 1:]
    bad_tile = (tile != np.round(tile)) | (tile < 0) | (tile >= n)
    if bad_tile.any():
        i = int(np.flatnonzero(bad_tile)[0])
        raise DataError(path, f"'points' row {i} names tile {tile[i]:g}; tiles are whole numbers 0..{n - 1}")
    outside = ((where < 0) | (where >= shape)).any(axis=1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise DataError(
            path,
            f"'points' row {i} at ({where[i, 0]:g}, {where[i, 1]:g}) lies outside its {shape[0]}x{shape[1]} tile "
            f"(rows and columns in [0, {shape[0]}) x [0, {shape[1]}))",
        )
    return points


def point_counts(points, n):
    """Number of points in each of ``n`` tiles: ``points`` rows ``(tile, row, col)``, tiles 0..n-1."""
    return np.bincount(points[:, 0].astype(np.int64), minlength=n).astype(np.int64)


def check_dot_counts(path, points, counts):
    """Refuse a dots file whose stored ``counts`` disagree with its ``points``.

    Parameters
    ----------
    path : str or os.PathLike
        The file, named in the error.
    points : ndarray, shape (M, 3)
        Its checked points.
    counts : ndarray of int64, shape (N,), or None
        Its checked ``counts``, if it has any.

    Raises
    ------
    DataError
        If a tile's count is not its number of points: one of the two arrays is wrong,
        and training (from the points) and scoring (against the counts) would disagree.
    """
    if counts is None:
        return
    dots = point_counts(points, len(counts))
    differ = np.flatnonzero(dots != counts)
    if len(differ):
        i = differ[0]
        raise DataError(
            path,
            f"'counts' disagree with 'points' on {len(differ)} tiles (tile {i}: count {counts[i]}, "
            f"{dots[i]} points); a dots file needs one point per counted cell",
        )


def load_tile_ints(path, key, n):
    """Load an optional per-tile integer array stored beside ``X`` and ``y``.

    The embedded set stores ``counts`` (true counts made with its centroid
    rule) and ``groups`` (the source image of each tile); the competition
    archive has neither (counts are then counted from the masks, groups found
    from shared pixels, see :func:`data.find_overlap_groups`).

    Parameters
    ----------
    path : str or os.PathLike
        The training ``.npz`` archive.
    key : str
        The array's name, e.g. ``"counts"`` or ``"groups"``.
    n : int
        Number of tiles the array must cover.

    Returns
    -------
    values : ndarray of int64, shape (n,), or None when the archive has no ``key``.

    Raises
    ------
    DataError
        If ``key`` is present but not ``n`` non-negative integers.
    """
    path = check_file(path)
    if key not in _keys(path):
        return None
    values = _read_npz(path, [key])[key]
    if values.shape != (n,) or not np.issubdtype(values.dtype, np.integer) or (values < 0).any():
        raise DataError(
            path, f"{key!r} must hold {n} non-negative integers, got {values.dtype} array of shape {values.shape}"
        )
    return values.astype(np.int64)


def load_scales(path):
    """The rescale factor of each source image of an imported archive, or None.

    ``python -m data.importer`` records ``scale``, one factor per source image; other
    archives (the competition's, the embedded set) have none.

    Parameters
    ----------
    path : str or os.PathLike
        A training ``.npz`` archive.

    Returns
    -------
    scales : ndarray of float64, shape (I,), or None when the archive has no ``scale``.

    Raises
    ------
    DataError
        If ``scale`` is present but not a non-empty 1-D array of positive finite numbers.
    """
    if "scale" not in _keys(path):
        return None
    scales = _read_npz(path, ["scale"])["scale"]
    if (
        scales.ndim != 1
        or not len(scales)
        or scales.dtype.kind not in "iuf"
        or not (np.isfinite(scales) & (scales > 0)).all()
    ):
        raise DataError(path, f"'scale' must hold positive numbers, one per image, got {scales.dtype} {scales.shape}")
    return scales.astype(np.float64)


def load_test(path):
    """Load and validate a test archive of images.

    Parameters
    ----------
    path : str or os.PathLike
        An ``.npz`` file with an array ``X``; other arrays are ignored.

    Returns
    -------
    X : ndarray of uint8, shape (N, H, W)
        Grayscale images, checked as in :func:`load_train`.

    Raises
    ------
    DataError
        On any of the problems listed for ``X`` in :func:`load_train`.
    """
    return _check_images(path, _read_npz(path, ["X"])["X"])
