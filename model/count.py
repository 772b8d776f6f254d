"""Count cell nuclei per tile from a predicted probability map.

Every counter takes a map of shape ``(N, H, W)`` (a batch of tiles) or
``(H, W)`` (one tile, promoted to a batch of one) and returns an ``int64``
array of shape ``(N,)``: one count per tile. The map is ``prob``, values in
[0, 1], for the thresholding counters, and a density map (cells per pixel)
for ``count_density``.

Offset convention
-----------------
This is the one place the ``offset`` parameter is defined. Every counter adds
``offset`` (an integer, possibly negative) to each tile's count:

* ``offset=0`` is the textbook count: one per object, background not counted.
* ``offset=1`` reproduces the original student's count, which took
  ``cv2.connectedComponents``'s ``num_labels`` as the count and so forgot that
  it includes the background label 0 (one too many on every tile).
* Negative offsets subtract a constant. Counts are then clipped at 0: a tile
  cannot hold fewer than no cells, and a negative count is not a valid
  prediction (``model.count_base.add_offset``).

Counters
--------
``count_components``
    Connected components of ``prob > threshold``. Touching nuclei merge, so it
    undercounts dense tiles even on a perfect mask.
``count_watershed`` (in :mod:`model.watershed`)
    Splits touching nuclei with markers at the peaks of the (smoothed)
    distance transform, grows each marker over the mask (nearest marker wins),
    drops tiny regions and applies the tile-edge rule: a nucleus counts only
    when its whole-image centroid lies in the tile, so a region touching the
    tile border counts only when it is at least ``edge_fraction`` of the
    typical region area in that tile (a nucleus cut through its centre keeps
    about half of its area).
``count_density``
    The rounded sum of a density map (a net trained to regress one Gaussian of
    unit mass per cell): touching cells add up instead of merging. No threshold.

``COUNTERS`` maps method names to counters and ``count_cells`` dispatches to
them, validating parameter names and values first.

Where the counted objects are
-----------------------------
``LOCATORS`` maps the counters that count objects to a function returning
their centroids on one map, built from the very regions the counter counts:
``object_centroids(prob, setting)`` has ``count_setting(prob, setting) - offset``
rows (before the clip at 0), so an overlay's marks and its count agree. A
counter of another kind (say, the sum of a density map) has no locator.
"""

import inspect

import cv2
import numpy as np

from model.count_base import add_offset, as_batch, check_values, one_map, row_col
from model.watershed import count_watershed, locate_watershed

__all__ = [
    "COUNTERS",
    "LOCATORS",
    "count_cells",
    "count_components",
    "count_density",
    "count_setting",
    "locate_components",
    "object_centroids",
]


def count_components(prob, threshold=0.5, offset=0, connectivity=8):
    """Count connected components of the thresholded probability map.

    Parameters
    ----------
    prob : ndarray, shape (N, H, W) or (H, W)
        Nucleus probabilities in [0, 1].
    threshold : float, optional
        Pixels with ``prob > threshold`` are foreground; in (0, 1).
    offset : int, optional
        Added to every count; see the module docstring (``1`` = background
        counted as a cell).
    connectivity : {8, 4}, optional
        Pixel connectivity of a component.

    Returns
    -------
    counts : ndarray of int64, shape (N,)
        ``num_labels - 1 + offset`` per tile, at least 0.
    """
    check_values(threshold=threshold, offset=offset, connectivity=connectivity)
    masks = (as_batch(prob) > threshold).astype(np.uint8)
    counts = [cv2.connectedComponents(m, connectivity=connectivity)[0] - 1 for m in masks]
    return add_offset(counts, offset)


def locate_components(prob, threshold=0.5, offset=0, connectivity=8):
    """Centroids of the components that :func:`count_components` counts on one map.

    Parameters
    ----------
    prob : ndarray, shape (H, W)
        Nucleus probabilities in [0, 1].
    threshold, offset, connectivity
        As in :func:`count_components`; ``offset`` moves the count, not the objects.

    Returns
    -------
    centroids : ndarray of float64, shape (K, 2)
        ``(row, col)`` of each component's pixels.
    """
    check_values(threshold=threshold, offset=offset, connectivity=connectivity)
    mask = (one_map(prob) > threshold).astype(np.uint8)
    centroids = cv2.connectedComponentsWithStats(mask, connectivity=connectivity)[3]
    return row_col(centroids[1:])  # label 0 is the background


def count_density(density, offset=0):
    """Count cells as the sum of a density map, rounded (halves up).

    Parameters
    ----------
    density : ndarray, shape (N, H, W) or (H, W)
        Cells per pixel, as a density net predicts them (it may stray below 0).
    offset : int, optional
        Added to every count; see the module docstring.

    Returns
    -------
    counts : ndarray of int64, shape (N,)
        ``max(round(sum), 0) + offset`` per tile, at least 0.

    Examples
    --------
    >>> count_density(np.full((2, 4, 4), 0.1), offset=1).tolist()
    [3, 3]
    """
    check_values(offset=offset)
    sums = as_batch(density).sum((1, 2), dtype=np.float64)
    # A map summing below 0 holds no cells: clipped before the offset, as every other counter's
    # raw count is at least 0, so counting once and adding offsets later (model.scoring) agrees.
    return add_offset(np.maximum(np.floor(sums + 0.5), 0), offset)


COUNTERS = {"components": count_components, "watershed": count_watershed, "density": count_density}
LOCATORS = {"components": locate_components, "watershed": locate_watershed}


def _dispatch(registry, prob, method, params, kind="counting method"):
    """Call ``registry[method](prob, **params)`` once the method and parameter names are known to it."""
    if method not in registry:
        raise ValueError(f"unknown {kind} {method!r}; choose from {sorted(registry)}")
    function = registry[method]
    accepted = list(inspect.signature(function).parameters)[1:]  # all but the map
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for method {method!r}; accepted: {accepted}")
    return function(prob, **params)


def count_cells(prob, method="components", **params):
    """Count nuclei per tile with the counter registered as ``method``.

    Parameters
    ----------
    prob : ndarray, shape (N, H, W) or (H, W)
        Nucleus probabilities in [0, 1], or a density map for ``density``.
    method : str, optional
        A key of ``COUNTERS``.
    **params
        Keyword parameters of that counter; omitted ones take its defaults.

    Returns
    -------
    counts : ndarray of int64, shape (N,)

    Raises
    ------
    ValueError
        For an unknown method, a parameter the counter does not take, or a
        parameter value out of range.
    """
    return _dispatch(COUNTERS, prob, method, params)


def count_setting(prob, setting):
    """Count with a setting dict: ``{"counter": method, **params}`` (as searched).

    Parameters
    ----------
    prob : ndarray, shape (N, H, W) or (H, W)
        Nucleus probabilities in [0, 1], or a density map for ``density``.
    setting : dict
        ``counter`` (a key of ``COUNTERS``) plus that counter's keyword parameters.

    Returns
    -------
    counts : ndarray of int64, shape (N,)
    """
    params = dict(setting)
    return count_cells(prob, params.pop("counter"), **params)


def object_centroids(prob, setting):
    """Where the objects are that a setting counts on one map (see "Where the counted objects are").

    Parameters
    ----------
    prob : ndarray, shape (H, W)
        Nucleus probabilities in [0, 1].
    setting : dict
        As for :func:`count_setting`; its ``counter`` must be a key of ``LOCATORS``.

    Returns
    -------
    centroids : ndarray of float64, shape (K, 2)
        ``(row, col)`` of every counted object; the count is ``max(K + offset, 0)``.

    Raises
    ------
    ValueError
        For a counter without a locator, or a parameter as in :func:`count_cells`.
    """
    params = dict(setting)
    return _dispatch(LOCATORS, prob, params.pop("counter"), params, "counter with object positions")
