"""How far counting settings are from the true counts, tile by tile."""

import numpy as np

from model.count import count_setting
from model.count_base import add_offset

__all__ = ["count_errors", "mae_by_setting"]


def count_errors(prob, true_counts, settings):
    """Signed count error of every counting setting on every tile.

    Settings that differ only in ``offset`` share one counting pass, since the offset is
    added (and the count clipped at 0) after counting.

    Parameters
    ----------
    prob : ndarray, shape (N, H, W)
        Nucleus probabilities in [0, 1].
    true_counts : array_like, shape (N,)
    settings : list of dict
        Counting settings as in :func:`count_setting`.

    Returns
    -------
    errors : ndarray of float64, shape (len(settings), N)
        Predicted minus true count.
    """
    true_counts = np.asarray(true_counts, dtype=np.float64)
    raw = {}
    errors = np.empty((len(settings), len(true_counts)))
    for row, setting in enumerate(settings):
        without_offset = {k: v for k, v in setting.items() if k != "offset"}
        key = tuple(sorted(without_offset.items()))
        if key not in raw:
            raw[key] = count_setting(prob, {**without_offset, "offset": 0})
        errors[row] = add_offset(raw[key], setting.get("offset", 0)) - true_counts
    return errors


def mae_by_setting(prob, true_counts, settings):
    """Mean absolute and mean signed count error of every counting setting.

    Parameters
    ----------
    prob, true_counts, settings
        As in :func:`count_errors`.

    Returns
    -------
    scores : list of (mae, bias) float pairs, in the order of ``settings``.
    """
    errors = count_errors(prob, true_counts, settings)
    return [(float(mae), float(bias)) for mae, bias in zip(np.abs(errors).mean(1), errors.mean(1))]
