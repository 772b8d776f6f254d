"""Find which tiles were cut from one source image, from the pixels they share."""

import numpy as np

__all__ = ["find_overlap_groups"]

# A row or column must hold at least this many distinct grey levels to link two tiles:
# flat lines (dark background, saturated blobs) recur across unrelated images. On the
# embedded set, 4 linked no tiles of different images while 2 did.
MIN_DISTINCT = 4


def _root(parent, i):
    """Union-find root of ``i``, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def find_overlap_groups(images, min_distinct=MIN_DISTINCT):
    """Group tiles that share a whole row or column of pixels.

    Overlapping windows cut from one image share whole rows (windows stacked
    vertically) or whole columns (side by side); tiles linked through any chain
    of shared lines form one group. Windows that do not overlap share no pixels
    and stay apart, so the groups are a lower bound on the true grouping.

    Parameters
    ----------
    images : ndarray, shape (N, H, W)
        The tiles.
    min_distinct : int, optional
        Lines with fewer distinct values are ignored (see ``MIN_DISTINCT``).

    Returns
    -------
    groups : ndarray of int64, shape (N,)
        Group ids ``0..G-1``, numbered by first tile.

    Examples
    --------
    >>> image = np.arange(48 * 32, dtype=np.uint16).reshape(48, 32)
    >>> tiles = np.stack([image[:32], image[16:]])  # overlap by 16 whole rows
    >>> find_overlap_groups(tiles).tolist()
    [0, 0]
    """
    images = np.asarray(images)
    parent = list(range(len(images)))
    first_tile = {}  # line bytes -> first tile holding it
    for i, tile in enumerate(images):
        for axis, lines in enumerate((tile, tile.T)):
            for line in lines:
                if len(np.unique(line)) < min_distinct:
                    continue
                j = first_tile.setdefault((axis, line.tobytes()), i)
                a, b = _root(parent, i), _root(parent, j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    roots = [_root(parent, i) for i in range(len(images))]
    return np.unique(roots, return_inverse=True)[1].astype(np.int64)
