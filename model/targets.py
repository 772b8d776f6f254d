"""Training targets drawn from dots: a soft disk, or a Gaussian density, at every annotated cell.

Dot annotations mark one point per cell and no outline. Disks are blobs of a nucleus's size,
so BCE training, the thresholding counters of :mod:`model.count` (components, watershed) and
the counting setting a study tunes on validation work on their predictions as on masks; but
disks of touching cells merge. A density map (a unit Gaussian per dot, as in the counting
literature) is regressed instead (``loss="mse"`` in :mod:`model.train`) and counted by its sum
(the ``density`` counter), so touching cells add up rather than merge.
"""

from __future__ import annotations

import numpy as np

__all__ = ["density_targets", "disk_targets"]


def disk_targets(points: np.ndarray, n: int, shape: tuple[int, int], radius: float) -> np.ndarray:
    """Soft disks of ``radius`` pixels at every point of every tile.

    A pixel at distance ``d`` from a point gets ``clip(radius + 0.5 - d, 0, 1)``: 1 well
    inside, 0.5 on the circle, 0 from ``radius + 0.5`` out, so thresholding at 0.5 leaves
    a disk of about ``pi * radius**2`` pixels. Where disks overlap a pixel takes the
    largest value, never a sum above 1. A disk near the tile's edge is cut by it.

    Parameters
    ----------
    points : ndarray, shape (M, 3)
        Rows ``(tile, row, col)``: the tile's index in ``0..n-1`` and the cell's position in
        it, pixel centres at integers (as ``data.load_points`` checks them).
    n : int
        Number of tiles.
    shape : tuple of int
        ``(H, W)`` of a tile.
    radius : float
        Disk radius in pixels, positive.

    Returns
    -------
    ndarray of float32, shape (n, H, W)
        Values in [0, 1]; 0 in a tile without points.

    Examples
    --------
    >>> disk_targets(np.array([[0, 2, 2]]), 1, (5, 5), 1)[0].round(2).tolist()[2]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if not 0 < radius < np.inf:
        raise ValueError(f"radius must be positive and finite, got {radius!r}")
    h, w = shape
    targets = np.zeros((n, h, w), np.float32)
    if len(points) == 0:
        return targets
    # Every pixel a disk reaches lies within ceil(radius) of the pixel nearest its centre.
    reach = int(np.ceil(radius))
    dr, dc = (a.ravel() for a in np.mgrid[-reach : reach + 1, -reach : reach + 1])
    centre = np.asarray(points[:, 1:], dtype=np.float64)
    rows = np.rint(centre[:, :1]).astype(np.int64) + dr  # (M, K) pixels around each point
    cols = np.rint(centre[:, 1:]).astype(np.int64) + dc
    value = np.clip(radius + 0.5 - np.hypot(rows - centre[:, :1], cols - centre[:, 1:]), 0, 1)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w) & (value > 0)
    tile = np.broadcast_to(np.asarray(points[:, :1], dtype=np.int64), rows.shape)
    flat = (tile[inside] * h + rows[inside]) * w + cols[inside]
    np.maximum.at(targets.reshape(-1), flat, value[inside].astype(np.float32))
    return targets


def density_targets(points: np.ndarray, n: int, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A Gaussian of ``sigma`` pixels at every point of every tile, each summing to 1 before cropping.

    Each Gaussian is sampled at the pixel centres within ``ceil(4 * sigma)`` of its point and
    normalised to sum to 1 there; the pixels outside the tile are then dropped, so a point near
    the edge adds only its part inside. A tile's map thus sums to its count of points (those
    away from its edges): counts by centroid give a cell to one tile, and its density stays
    mostly there. Overlapping Gaussians add up.

    Parameters
    ----------
    points : ndarray, shape (M, 3)
        Rows ``(tile, row, col)`` as in :func:`disk_targets`.
    n : int
        Number of tiles.
    shape : tuple of int
        ``(H, W)`` of a tile.
    sigma : float
        Standard deviation of each Gaussian in pixels, positive.

    Returns
    -------
    ndarray of float32, shape (n, H, W)
        Non-negative densities; 0 in a tile without points.

    Examples
    --------
    >>> round(float(density_targets(np.array([[0, 8, 8], [0, 9, 10]]), 1, (20, 20), 1.5).sum()), 4)
    2.0
    """
    if not 0 < sigma < np.inf:
        raise ValueError(f"sigma must be positive and finite, got {sigma!r}")
    h, w = shape
    targets = np.zeros((n, h, w), np.float32)
    if len(points) == 0:
        return targets
    reach = int(np.ceil(4 * sigma))  # beyond 4 sigma a Gaussian holds under 1e-4 of its mass
    dr, dc = (a.ravel() for a in np.mgrid[-reach : reach + 1, -reach : reach + 1])
    centre = np.asarray(points[:, 1:], dtype=np.float64)
    rows = np.rint(centre[:, :1]).astype(np.int64) + dr  # (M, K) pixels around each point
    cols = np.rint(centre[:, 1:]).astype(np.int64) + dc
    value = np.exp(-((rows - centre[:, :1]) ** 2 + (cols - centre[:, 1:]) ** 2) / (2 * sigma**2))
    value /= value.sum(1, keepdims=True)  # normalised before the tile's edge crops it
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    tile = np.broadcast_to(np.asarray(points[:, :1], dtype=np.int64), rows.shape)
    flat = (tile[inside] * h + rows[inside]) * w + cols[inside]
    np.add.at(targets.reshape(-1), flat, value[inside].astype(np.float32))
    return targets
