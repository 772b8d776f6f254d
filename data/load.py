"""Load and validate the tile arrays of training and test archives.

Images, soft masks (or dots), per-tile integers and rescale factors are read
with :func:`data.npz.read_npz` and checked here. Every problem with an input
file is reported as a :class:`DataError` whose message is a single line
naming the file and what is wrong with it, so a study fails early with an
actionable message instead of deep inside training.
"""

import numpy as np

from .errors import DataError, check_file
from .npz import npz_keys, read_npz
from .points import label_centres, load_points

__all__ = [
    "load_train",
    "load_train_or_dots",
    "load_tile_ints",
    "load_scales",
    "load_test",
]

# The U-Net halves the resolution up to 4 times; sizes that do not divide
# evenly would break the skip connections.
SIZE_MULTIPLE = 16


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
        or an array is larger than ``data.npz.MAX_MEMBER_BYTES`` uncompressed.
    """
    arrays = read_npz(path, ["X", "y"])
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


def load_train_or_dots(path):
    """Load a training archive: soft masks ``y``, cell centres, or both.

    Centres are the ``points`` (one per cell; the importer's files have them), else, beside
    masks, the centroid of each instance of every tile's ``labels`` (an instance cut by the
    tile's edge gives its part's centroid). A file without ``y`` trains from its ``points``
    (the importer's ``--dots`` and ``--dots-csv`` files).

    Parameters
    ----------
    path : str or os.PathLike
        The training ``.npz`` archive.

    Returns
    -------
    X : ndarray of uint8, shape (N, H, W)
    y : ndarray of float32, shape (N, H, W), or None for a dots file
    points : ndarray of float64, shape (M, 3), or None for a file of masks alone
        ``(tile, row, col)`` of every cell, checked by :func:`data.points.load_points`.

    Raises
    ------
    DataError
        As :func:`load_train` for a mask file, with ``points`` or ``labels`` checked as
        :func:`data.points.load_points` and :func:`data.points.label_centres` do; for a dots
        file, as :func:`data.points.load_points`, for ``X`` as :func:`load_train`, and when it
        has no point at all; for a file with neither ``y`` nor ``points``.
    """
    keys = npz_keys(path)
    if "y" in keys:
        X, y = load_train(path)
        if "points" in keys:
            return X, y, load_points(path, len(X), X.shape[1:])
        return X, y, label_centres(path, X.shape) if "labels" in keys else None
    if "points" not in keys:
        found = ", ".join(map(repr, keys)) or "none"
        raise DataError(path, f"nothing to train on: no 'y' (soft masks) and no 'points' (dots) (found: {found})")
    X = _check_square(path, _check_images(path, read_npz(path, ["X"])["X"]))
    points = load_points(path, len(X), X.shape[1:])
    if len(points) == 0:
        # Every true count would be 0: a study would learn blank targets and score val MAE 0.000.
        raise DataError(path, "'points' is empty: a dots file needs at least one dot (one per cell) to train on")
    return X, None, points


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
    if key not in npz_keys(path):
        return None
    values = read_npz(path, [key])[key]
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
    if "scale" not in npz_keys(path):
        return None
    scales = read_npz(path, ["scale"])["scale"]
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
    return _check_images(path, read_npz(path, ["X"])["X"])
