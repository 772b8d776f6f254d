"""Training targets drawn from dots: a soft disk at every annotated cell.

Dot annotations mark one point per cell and no outline. The net is trained on disks drawn
at the dots, not on a density map: a disk per cell is a blob of a nucleus's size, so BCE
training, every counter of :mod:`model.count` (components, watershed) and the counting
setting a study tunes on validation all work on its predictions as they are; a density map
would need a regression loss and a counter that integrates instead.
"""

from __future__ import annotations

import numpy as np

__all__ = ["disk_targets"]


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
