"""Predict the map of a whole image of any size (probabilities or a density) from overlapping square windows.

A net trained on ``tile x tile`` tiles sees a whole image through windows that overlap by
half a tile. Each window's prediction is weighted by a separable raised cosine,
``sin^2(pi (i + 0.5) / tile)`` per axis, and the weighted sum is divided by the summed
weights: a map that every window predicts alike (a constant, or any map of the pixels
themselves) stitches back exactly, with no seam, and each pixel is mostly taken from the
windows that see it far from their edges, where a U-Net's zero padding does not reach.
Windows are predicted in batches, so memory grows with the image, not with the windows.
A density map stitches as a probability map does: each pixel's density is the weighted mean of
the windows' densities at it, never their sum, so no cell of an overlap counts twice. Nothing here
knows about the search or what the map means: the caller hands in a predict function.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from data.tiling import window_starts

__all__ = ["window_weights", "window_origins", "stitch_predict"]


def window_weights(tile):
    """Blending weight of each pixel of a window along one axis.

    ``sin^2(pi (i + 0.5) / tile)``: largest at the centre, small but positive at the edges
    (so a pixel at the image border, which one window alone covers, keeps its value),
    and two windows half a tile apart sum to exactly 1 (``sin^2 + cos^2``).

    Parameters
    ----------
    tile : int
        Window side in pixels.

    Returns
    -------
    weights : ndarray of float32, shape (tile,)

    Examples
    --------
    >>> w = window_weights(8)
    >>> bool(np.allclose(w[:4] + w[4:], 1)), bool(w.min() > 0)
    (True, True)
    """
    return (np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2).astype(np.float32)


def window_origins(shape, tile, stride=None):
    """Top-left pixels of the windows that cover an image, overlapping by ``tile - stride``.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the image, at least one tile each (pad a smaller image first).
    tile : int
        Window side in pixels.
    stride : int, optional
        Step between windows; default half a tile.

    Returns
    -------
    rows, cols : ndarray of int64
        Window starts along each axis (see :func:`data.tiling.window_starts`); the windows
        are every ``(row, col)`` pair, the last of each axis flush with the far edge.
    """
    stride = stride or max(tile // 2, 1)
    return window_starts(shape[0], tile, stride), window_starts(shape[1], tile, stride)


def _coverage(starts, size, weights):
    """Summed window weight at each pixel along one axis."""
    total = np.zeros(size, np.float32)
    for start in starts:
        total[start : start + len(weights)] += weights
    return total


def stitch_predict(
    image: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    tile: int,
    batch_size: int = 32,
    stride: int | None = None,
) -> np.ndarray:
    """The map of a whole image (probabilities or a density), stitched from blended window predictions.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The image (uint8 for a U-Net), any size. One smaller than a tile along an axis is
        padded with black at the bottom or right, as the importer pads its tiles, and the
        map cropped back.
    predict : callable
        Maps windows, an array of shape (B, tile, tile) of the image's dtype, to their
        maps, shape (B, tile, tile) (e.g. ``lambda w: model.infer.predict_prob(net, w, loss=loss)``).
    tile : int
        Window side: the tile size the net learnt on.
    batch_size : int, optional
        Windows per call of ``predict``; bounds the memory of one call.
    stride : int, optional
        Step between windows; default half a tile.

    Returns
    -------
    prob : ndarray of float32, shape (H, W)
        Per pixel, the weighted mean of the windows covering it.
    """
    h, w = image.shape
    padded = np.pad(image, ((0, max(tile - h, 0)), (0, max(tile - w, 0))))
    rows, cols = window_origins(padded.shape, tile, stride)
    weights = window_weights(tile)
    weights2d = np.outer(weights, weights)
    origins = [(r, c) for r in rows for c in cols]
    total = np.zeros(padded.shape, np.float32)
    for first in range(0, len(origins), batch_size):
        chunk = origins[first : first + batch_size]
        maps = predict(np.stack([padded[r : r + tile, c : c + tile] for r, c in chunk]))
        for (r, c), window in zip(chunk, maps):
            total[r : r + tile, c : c + tile] += window * weights2d
    # The windows form a grid, so the summed weights are the outer product of each axis's:
    # dividing by both in place needs no image-sized weight array.
    total /= _coverage(rows, padded.shape[0], weights)[:, None]
    total /= _coverage(cols, padded.shape[1], weights)[None, :]
    return total[:h, :w]
