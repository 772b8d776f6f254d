"""Seeded train/validation split of tile indices."""

import numpy as np

__all__ = ["split_indices"]


def split_indices(n, val_fraction=0.2, seed=0):
    """Split ``range(n)`` into random, disjoint train and validation indices.

    Parameters
    ----------
    n : int
        Number of tiles, at least 2.
    val_fraction : float, optional
        Share of tiles for validation, in (0, 1). The validation size is
        ``n * val_fraction`` rounded half up, clipped so that both parts
        hold at least one tile.
    seed : int, optional
        Seed of the PCG64 generator; the same ``(n, val_fraction, seed)``
        always gives the same split, on any platform.

    Returns
    -------
    train_idx, val_idx : ndarray of int64
        Sorted indices; together they cover ``0..n-1`` exactly once.

    Raises
    ------
    ValueError
        If `n` < 2 or `val_fraction` is not in (0, 1).

    Notes
    -----
    The split is per tile. The embedded dataset cuts up to 8 tiles from each
    source image, so neighbouring tiles of one image can land on both sides
    and validation scores are somewhat optimistic. The Kaggle competition
    data has the same property; the held-out test set is split by source
    image and is not affected.

    Examples
    --------
    >>> train, val = split_indices(10, 0.2, seed=0)
    >>> len(train), len(val)
    (8, 2)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be an integer, got {n!r}")
    if n < 2:
        raise ValueError(f"need at least 2 tiles to split into train and "
                         f"validation, got {n}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    # Round half up (not banker's rounding) so sizes are easy to predict.
    n_val = int(np.floor(n * val_fraction + 0.5))
    n_val = min(max(n_val, 1), n - 1)
    # Explicit PCG64 rather than default_rng so a future change of numpy's
    # default bit generator cannot silently change published splits.
    perm = np.random.Generator(np.random.PCG64(seed)).permutation(int(n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
