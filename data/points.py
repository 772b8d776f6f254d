"""Dots: the optional ``points`` of a training archive, one row ``(tile, row, col)`` per cell.

Loaded and checked against the tiles, counted per tile, checked against stored counts, and
selected for a subset of tiles when a file is split.
"""

import numpy as np

from .errors import DataError, check_file
from .npz import npz_keys, read_npz
from .tiling import instance_centroids

__all__ = ["load_points", "label_centres", "point_counts", "check_dot_counts", "select_points", "crowding"]


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
    if "points" not in npz_keys(path):
        return None
    points = read_npz(path, ["points"])["points"]
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


def label_centres(path, shape):
    """The centroid of every instance of every tile's ``labels``, as ``points`` rows ``(tile, row, col)``.

    Parameters
    ----------
    path : str or os.PathLike
        The training ``.npz`` archive, with ``labels``: integer instance ids per tile, 0 background.
    shape : tuple of int
        ``(N, H, W)`` of its tiles.

    Returns
    -------
    ndarray of float64, shape (M, 3)

    Raises
    ------
    DataError
        If ``labels`` is not a non-negative integer array of the tiles' shape.
    """
    labels = read_npz(path, ["labels"])["labels"]
    if labels.shape != tuple(shape) or not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
        raise DataError(
            path, f"'labels' must be non-negative integers of shape {tuple(shape)}, got {labels.dtype} {labels.shape}"
        )
    rows = [np.column_stack([np.full(len(c), i), c]) for i, c in enumerate(instance_centroids(t)[0] for t in labels)]
    return np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, 3))


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


def select_points(points, idx):
    """The points of tiles ``idx``, their tile renumbered to its position in ``idx``.

    Parameters
    ----------
    points : ndarray, shape (M, 3)
        Rows ``(tile, row, col)``.
    idx : ndarray of int, shape (K,)
        Sorted tile indices, as the splits return them.

    Returns
    -------
    ndarray, shape (M', 3)
        The rows whose tile is in ``idx``, in their order, tile ``idx[j]`` renumbered ``j``.

    Examples
    --------
    >>> select_points(np.array([[0, 1, 2], [3, 4, 5], [2, 6, 7]]), np.array([2, 3])).tolist()
    [[1, 4, 5], [0, 6, 7]]
    """
    tiles = points[:, 0].astype(np.int64)
    keep = np.isin(tiles, idx)
    out = points[keep].copy()
    out[:, 0] = np.searchsorted(idx, tiles[keep])
    return out


def crowding(points, distance):
    """The share of dots whose nearest other dot in the same tile is closer than ``distance`` px.

    Disks of radius ``r`` drawn at two dots closer than ``2 r + 1`` touch and count as one cell:
    this share says how many cells such a target merges.

    Parameters
    ----------
    points : ndarray, shape (M, 3)
        Rows ``(tile, row, col)``.
    distance : float
        The distance in pixels under which two dots are crowded.

    Returns
    -------
    float
        In [0, 1]; 0 with no dots.

    Examples
    --------
    >>> crowding(np.array([[0, 5, 5], [0, 5, 9], [0, 40, 40], [1, 5, 6]]), 7)
    0.5
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) == 0:
        return 0.0
    crowded = 0
    order = np.argsort(points[:, 0], kind="stable")
    tiles, starts = np.unique(points[order, 0], return_index=True)
    for block in np.split(points[order, 1:], starts[1:]):
        gaps = np.linalg.norm(block[:, None, :] - block[None, :, :], axis=-1)
        np.fill_diagonal(gaps, np.inf)
        crowded += int((gaps.min(axis=1) < distance).sum())
    return crowded / len(points)
