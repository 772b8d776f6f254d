"""Seeded train/validation splits: of tile indices, and of a training file into a study's split."""

from dataclasses import dataclass

import numpy as np

from .errors import DataError
from .groups import find_overlap_groups
from .load import load_tile_ints, load_train_or_dots
from .npz import npz_keys
from .points import check_dot_counts, select_points

__all__ = [
    "Split",
    "load_split",
    "split_groups",
    "split_indices",
    "source_groups",
]

# Training on a single tile is no training: a split leaves at least this many on the train side.
MIN_TRAIN_TILES = 2


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
    The split is per tile: tiles cut from one source image (which may overlap)
    land on both sides and validation rewards memorising them. Prefer
    :func:`split_groups` whenever the source images are known or found.

    Examples
    --------
    >>> train, val = split_indices(10, 0.2, seed=0)
    >>> len(train), len(val)
    (8, 2)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be an integer, got {n!r}")
    if n < 2:
        raise ValueError(f"need at least 2 tiles to split into train and validation, got {n}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    # Round half up (not banker's rounding) so sizes are easy to predict.
    n_val = int(np.floor(n * val_fraction + 0.5))
    n_val = min(max(n_val, 1), n - 1)
    # Explicit PCG64 rather than default_rng so a future change of numpy's
    # default bit generator cannot silently change published splits.
    perm = np.random.Generator(np.random.PCG64(seed)).permutation(int(n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def split_groups(groups, val_fraction=0.2, seed=0):
    """Split tiles into train and validation so that no group is on both sides.

    Groups (source images) are shuffled with a seeded PCG64 generator and
    moved to validation, in that order, until it holds at least
    ``val_fraction`` of the tiles (rounded half up). A group that would leave
    fewer than ``MIN_TRAIN_TILES`` training tiles is passed over, so training
    always keeps at least that many tiles and validation at least one group.

    Parameters
    ----------
    groups : array_like of int, shape (N,)
        Group id of every tile, e.g. its source image.
    val_fraction : float, optional
        Target share of tiles for validation, in (0, 1).
    seed : int, optional
        The same ``(groups, val_fraction, seed)`` always gives the same split.

    Returns
    -------
    train_idx, val_idx : ndarray of int64
        Sorted tile indices; together they cover ``0..N-1`` exactly once.

    Raises
    ------
    ValueError
        With fewer than 2 groups, `val_fraction` outside (0, 1), or no group that
        can go to validation and leave ``MIN_TRAIN_TILES`` training tiles.

    Examples
    --------
    >>> train, val = split_groups([0, 0, 1, 1, 2, 2, 3, 3, 4, 4], 0.2, seed=0)
    >>> len(train), len(val)
    (8, 2)
    """
    groups = np.asarray(groups)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ids = np.unique(groups)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 groups (source images) to split, got {len(ids)}")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(ids)
    sizes = [np.count_nonzero(groups == g) for g in order]
    target = max(np.floor(len(groups) * val_fraction + 0.5), 1)
    val_groups, n_val = [], 0
    for group, size in zip(order, sizes):
        if n_val >= target:
            break
        # Passing over a group (rather than stopping) keeps a small group for validation when
        # a large one would leave training a single tile.
        if len(groups) - n_val - size >= MIN_TRAIN_TILES:
            val_groups.append(group)
            n_val += size
    if not val_groups:
        raise ValueError(
            f"{len(groups)} tiles in {len(ids)} groups: no group can go to validation "
            f"and leave at least {MIN_TRAIN_TILES} tiles for training"
        )
    in_val = np.isin(groups, val_groups)
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)


@dataclass
class Split:
    """A study's fixed training and validation tiles.

    A file with masks gives ``train_masks`` and ``val_masks``; one with cell centres (a dots
    file, or masks with ``points`` or ``labels``) gives ``train_points`` and ``val_points``,
    rows ``(tile, row, col)`` whose tile indexes that part's own tiles. ``val_counts`` are
    the true validation counts stored in the file, or None when it has none (they are then
    counted from ``val_masks``, or are the dots per tile); ``val_groups`` the source image of
    each validation tile. ``train_groups`` and ``train_counts`` are the same for the training
    tiles (None when unknown): the finalist stage cuts folds of them with
    :func:`data.folds.fold_split`.
    """

    train_images: np.ndarray
    train_masks: np.ndarray | None
    val_images: np.ndarray
    val_masks: np.ndarray | None
    val_counts: np.ndarray | None
    val_groups: np.ndarray
    train_points: np.ndarray | None = None
    val_points: np.ndarray | None = None
    train_groups: np.ndarray | None = None
    train_counts: np.ndarray | None = None

    @property
    def annotation(self) -> str:
        """What the net can learn from: ``"masks"``, ``"dots"`` (no masks) or ``"masks+dots"`` (both)."""
        if self.train_masks is None:
            return "dots"
        return "masks" if self.train_points is None else "masks+dots"


def source_groups(path, images, by="image"):
    """The source image of every tile, and a sentence on the rule that gave it.

    Parameters
    ----------
    path : str or os.PathLike
        The training archive; its ``groups`` array is used when present.
    images : ndarray, shape (N, H, W)
        Its tiles, grouped by shared rows or columns of pixels when it has no ``groups``.
    by : {"image", "tile"}
        ``"tile"`` makes every tile its own group (a per-tile split).

    Returns
    -------
    groups : ndarray of int64, shape (N,)
    rule : str
    """
    if by == "tile":
        return np.arange(len(images)), "per tile (--split tile): tiles of one image on both sides"
    stored = load_tile_ints(path, "groups", len(images))
    if stored is not None:
        return stored, f"by source image ('groups' array: {len(np.unique(stored))} images)"
    found = find_overlap_groups(images)
    return found, (
        f"by source image, found from shared rows/columns of pixels ({found.max() + 1} groups in {len(images)} tiles)"
    )


def load_split(path, seed=0, val_fraction=0.2, by="image"):
    """Load a training archive and split it, no source image on both sides (unless ``by="tile"``).

    A file with masks ``y`` splits its masks, and its cell centres when it has them; one
    without splits its ``points`` (dots) instead. Stored ``counts`` must agree with stored
    ``points`` (centres found from ``labels`` include cells cut by a tile's edge).

    Returns
    -------
    split : Split
    rule : str
        How tiles were grouped (see :func:`source_groups`).

    Raises
    ------
    DataError
        For a bad file, or one that cannot be split (a single source image, too few tiles).
    """
    images, masks, points = load_train_or_dots(path)
    counts = load_tile_ints(path, "counts", len(images))
    if "points" in npz_keys(path):
        check_dot_counts(path, points, counts)
    groups, rule = source_groups(path, images, by)
    try:
        train_idx, val_idx = split_groups(groups, val_fraction, seed)
    except ValueError as exc:
        raise DataError(path, f"cannot split into training and validation tiles: {exc}") from None
    val_counts = None if counts is None else counts[val_idx]
    split = Split(
        images[train_idx],
        None if masks is None else masks[train_idx],
        images[val_idx],
        None if masks is None else masks[val_idx],
        val_counts,
        groups[val_idx],
        None if points is None else select_points(points, train_idx),
        None if points is None else select_points(points, val_idx),
        groups[train_idx],
        None if counts is None else counts[train_idx],
    )
    return split, rule
