"""What every counter shares: the shape of its map, the rules for its parameter values, the offset.

:mod:`model.count` (which documents the offset convention) and :mod:`model.watershed` build on these.
"""

import numbers

import numpy as np

__all__ = ["add_offset", "as_batch", "check_values", "one_map", "row_col"]


def as_batch(prob):
    """Return ``prob`` as a float32 array of shape (N, H, W)."""
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim == 2:
        prob = prob[np.newaxis]
    if prob.ndim != 3:
        raise ValueError(f"prob must have shape (N, H, W) or (H, W), got {prob.shape}")
    return prob


def _is_int(value):
    # bool is an Integral subclass, but True as a count offset is a bug.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# One rule per parameter name: (predicate, what the value must be).
_RULES = {
    "threshold": (lambda v: _is_real(v) and 0 < v < 1, "a number in (0, 1)"),
    "offset": (_is_int, "an integer"),
    "connectivity": (lambda v: _is_int(v) and v in (4, 8), "4 or 8"),
    "min_distance": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "min_area": (lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "edge_fraction": (lambda v: _is_real(v) and 0 <= v <= 1, "a number in [0, 1]"),
}


def check_values(**params):
    """Raise ValueError for the first parameter whose value breaks its rule."""
    for name, value in params.items():
        ok, expected = _RULES[name]
        if not ok(value):
            raise ValueError(f"{name} must be {expected}, got {value!r}")


def add_offset(counts, offset):
    """Add ``offset`` to raw counts, clipped at 0 (the offset convention of :mod:`model.count`)."""
    return np.maximum(np.asarray(counts, dtype=np.int64).reshape(-1) + offset, 0)


def one_map(prob):
    """``prob`` as a float32 array of shape (H, W)."""
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"prob must be one map of shape (H, W), got {prob.shape}")
    return prob


def row_col(centroids_xy):
    """cv2's ``(x, y)`` centroids as ``(row, col)``, float64, shape (K, 2)."""
    return np.asarray(centroids_xy, np.float64).reshape(-1, 2)[:, ::-1].copy()
