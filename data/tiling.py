"""Rescale whole images and cut them into tiles, counting each cell in the tiles that hold its centroid.

Coordinates are pixel indices ``(row, col)``, pixel centres at integers. A cell
counts for a tile when its centroid, taken on the whole (rescaled) image, lies
in the tile's window: ``r0 <= row < r0 + T`` and ``c0 <= col < c0 + T``.
"""

import cv2
import numpy as np

__all__ = [
    "OBJECT_SIZE",
    "KEEP_RATIO",
    "instance_centroids",
    "choose_scale",
    "scaled_shape",
    "resize",
    "map_points",
    "float32_points",
    "soft_mask",
    "window_starts",
    "cut_tiles",
    "count_in_windows",
]

# The embedded set's median nucleus is 8-14 px across, the size the harness's
# nets were built for: shrink to the middle of that range...
OBJECT_SIZE = 11.0
# ...but only images whose median object is above its top (14 px for 11), so
# an image already in range is not resampled (and blurred) for nothing.
KEEP_RATIO = 14 / 11


def instance_centroids(labels):
    """Pixel centroid and area of every instance of a label image.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        Instance ids, 0 = background; ids need not be consecutive, and an id
        in several pieces is one instance.

    Returns
    -------
    centroids : ndarray of float64, shape (K, 2)
        ``(row, col)`` of each instance, in increasing id order.
    areas : ndarray of int64, shape (K,)
        Pixels of each instance.

    Examples
    --------
    >>> labels = np.zeros((4, 4), int)
    >>> labels[0, :2] = 5
    >>> instance_centroids(labels)
    (array([[0. , 0.5]]), array([2]))
    """
    rows, cols = np.nonzero(labels)
    _, inverse = np.unique(labels[rows, cols], return_inverse=True)
    areas = np.bincount(inverse)
    sums = np.stack([np.bincount(inverse, rows), np.bincount(inverse, cols)], axis=1)
    return sums / areas[:, None], areas


def choose_scale(areas, object_size=OBJECT_SIZE, keep_ratio=KEEP_RATIO):
    """The factor that shrinks an image so its median object is `object_size` px across.

    Object size is the equivalent diameter, ``sqrt(4 * area / pi)``. Images
    whose median is at most ``keep_ratio * object_size`` are kept (factor 1),
    as are images without objects: nothing is ever enlarged.

    Parameters
    ----------
    areas : array_like of int
        Pixel areas of the image's objects.
    object_size : float, optional
        Target median diameter in pixels.
    keep_ratio : float, optional
        Largest median, relative to `object_size`, kept as is.

    Returns
    -------
    scale : float
        In (0, 1].

    Examples
    --------
    >>> round(choose_scale([np.pi * 11**2] * 3), 3)  # discs 22 px across
    0.5
    >>> choose_scale([np.pi * 6**2])  # 12 px: already in range
    1.0
    """
    if len(areas) == 0:
        return 1.0
    median = float(np.median(np.sqrt(4 * np.asarray(areas, float) / np.pi)))
    return object_size / median if median > keep_ratio * object_size else 1.0


def scaled_shape(shape, scale):
    """``(H, W)`` multiplied by `scale`, rounded half up, at least 1 pixel each."""
    return tuple(max(1, int(np.floor(n * scale + 0.5))) for n in shape[:2])


def resize(image, shape):
    """Resize a 2-D array to `shape`: area averaging to shrink, bilinear to enlarge.

    Area averaging makes a resized binary mask the fraction of each new pixel
    that was covered; bilinear keeps values within the input's range.
    """
    if tuple(shape) == image.shape[:2]:
        return image
    shrink = shape[0] * shape[1] < image.shape[0] * image.shape[1]
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def map_points(points, shape, new_shape):
    """Pixel-index coordinates of `points` once the image is resized from `shape` to `new_shape`.

    Pixel edges scale, not pixel centres: ``new = (old + 0.5) * factor - 0.5``
    per axis, with the factor of the rounded sizes. When shrinking, a point in
    the first half pixel would land just below 0, and when enlarging, one in
    the last half pixel at or past the new size: outside every window, the
    cell lost. Both are clipped into the image.

    Examples
    --------
    >>> map_points(np.array([[1.5, 0.0]]), (4, 4), (2, 2))
    array([[0.5, 0. ]])
    >>> bool(map_points(np.array([[3.9, 0.0]]), (4, 4), (6, 6))[0, 0] < 6)
    True
    """
    new_shape = np.asarray(new_shape[:2], float)
    factors = new_shape / np.asarray(shape[:2], float)
    moved = (np.asarray(points, float) + 0.5) * factors - 0.5
    return np.clip(moved, 0.0, np.nextafter(new_shape, 0.0))


def float32_points(points, tile):
    """Window points ``(window, row, col)`` as float32, rows and columns still inside the window.

    Float32 rounds a coordinate just under `tile` (199.99999999 - 72 in a
    128-px window) up to `tile` itself, outside the window that counted it,
    and the study refuses the file; such coordinates are clipped to the
    largest float32 under `tile`.

    Examples
    --------
    >>> bool(float32_points(np.array([[0, 3.0, 127.99999999]]), 128)[0, 2] < 128)
    True
    """
    points = np.asarray(points, float).astype(np.float32)
    points[:, 1:] = np.minimum(points[:, 1:], np.nextafter(np.float32(tile), np.float32(0)))
    return points


def soft_mask(labels, shape):
    """The fraction of each pixel of the resized image covered by any instance.

    Returns
    -------
    mask : ndarray of float32, shape `shape`, in [0, 1]
    """
    return np.clip(resize((labels > 0).astype(np.float32), shape), 0.0, 1.0)


def window_starts(size, tile, stride=None):
    """First pixel of each window of `tile` pixels covering `size` pixels.

    Windows step by `stride` (default: `tile`, no overlap); when the steps do
    not end flush with the far edge, a last window does, overlapping the one
    before. A size up to one tile gives the one window at 0 (the image is then
    padded, see :func:`cut_tiles`).

    Examples
    --------
    >>> window_starts(300, 128).tolist(), window_starts(256, 128).tolist(), window_starts(40, 128).tolist()
    ([0, 128, 172], [0, 128], [0])
    >>> window_starts(300, 128, stride=64).tolist()
    [0, 64, 128, 172]
    """
    if size <= tile:
        return np.zeros(1, np.int64)
    starts = np.arange(0, size - tile + 1, stride or tile)
    return starts if starts[-1] == size - tile else np.append(starts, size - tile)


def cut_tiles(image, tile):
    """Cut a 2-D image into the windows of :func:`window_starts` on both axes.

    An image smaller than a tile along an axis is padded with zeros at the
    bottom or right (black for images, uncovered for masks).

    Returns
    -------
    tiles : ndarray, shape (N, tile, tile), the image's dtype
        Row-major: windows left to right, then top to bottom.
    origins : ndarray of int64, shape (N, 2)
        ``(row, col)`` of each window's top-left pixel in the image.
    """
    h, w = image.shape
    padded = np.pad(image, ((0, max(tile - h, 0)), (0, max(tile - w, 0))))
    origins = np.array([(r, c) for r in window_starts(h, tile) for c in window_starts(w, tile)], np.int64)
    return np.stack([padded[r : r + tile, c : c + tile] for r, c in origins]), origins


def count_in_windows(points, origins, tile):
    """Count the points in each window, half-open: ``r0 <= row < r0 + tile``, same for columns.

    A point in the overlap of two windows counts in both.

    Parameters
    ----------
    points : ndarray, shape (K, 2)
        ``(row, col)`` cell centroids on the whole image.
    origins : ndarray, shape (N, 2)
        Windows' top-left pixels.
    tile : int

    Returns
    -------
    counts : ndarray of int64, shape (N,)
    local : ndarray of float64, shape (M, 3)
        ``(window, row, col)`` of every point in a window, in window coordinates.

    Examples
    --------
    >>> counts, local = count_in_windows(np.array([[3.0, 9.9]]), np.array([[0, 0], [0, 10]]), 10)
    >>> counts.tolist(), local.tolist()
    ([1, 0], [[0.0, 3.0, 9.9]])
    """
    points = np.asarray(points, float).reshape(-1, 2)
    counts, local = np.zeros(len(origins), np.int64), [np.zeros((0, 3))]
    # One window at a time: a windows x points array would not fit for a whole slide.
    for i, origin in enumerate(origins):
        offsets = points - origin
        inside = offsets[((offsets >= 0) & (offsets < tile)).all(axis=1)]
        counts[i] = len(inside)
        local.append(np.column_stack([np.full(len(inside), i), inside]))
    return counts, np.concatenate(local)
