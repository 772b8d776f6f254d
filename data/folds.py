"""Folds of a study's training tiles, by source image, for the finalist stage's cross-fitting runs."""

import numpy as np

from .points import select_points
from .split import Split

__all__ = ["assign_folds", "fold_split"]


def assign_folds(groups, n_folds, seed=0):
    """Deal groups (source images) into ``n_folds`` folds of about equal tile counts.

    Groups are shuffled with a seeded PCG64 generator, then each goes, largest first, to the
    fold that holds the fewest tiles so far; all tiles of a group share its fold.

    Parameters
    ----------
    groups : array_like of int, shape (N,)
        Group id of every tile.
    n_folds : int
        Number of folds, at least 2 and at most the number of groups.
    seed : int, optional
        The same ``(groups, n_folds, seed)`` always gives the same folds.

    Returns
    -------
    ndarray of int64, shape (N,)
        The fold, ``0 .. n_folds - 1``, of every tile.

    Raises
    ------
    ValueError
        If `n_folds` is below 2 or above the number of groups.

    Examples
    --------
    >>> assign_folds([0, 0, 1, 1, 2, 3], 2, seed=0).tolist()
    [0, 0, 1, 1, 0, 1]
    """
    groups = np.asarray(groups)
    ids, sizes = np.unique(groups, return_counts=True)
    if not 2 <= n_folds <= len(ids):
        raise ValueError(f"need 2 to {len(ids)} folds for {len(ids)} groups, got {n_folds}")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(ids))
    # A stable sort after the shuffle: ties in size stay in shuffled order.
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of_group, load = np.empty(len(ids), np.int64), np.zeros(n_folds, np.int64)
    for g in order:
        fold = int(np.argmin(load))
        fold_of_group[g], load[fold] = fold, load[fold] + sizes[g]
    return fold_of_group[np.searchsorted(ids, groups)]


def fold_split(split, folds, fold):
    """The split of one cross-fitting run: fold ``fold`` of the training tiles held out.

    The run trains on the other folds' training tiles and on all of ``split``'s validation
    tiles, and is scored on the held-out fold. No source image is on both sides, since every
    image's tiles share one fold and training and validation images differ in ``split``.

    Parameters
    ----------
    split : Split
        The study's split, with ``train_groups``.
    folds : ndarray of int, shape (N_train,)
        The fold of every training tile (:func:`assign_folds` of ``split.train_groups``).
    fold : int
        The fold held out.

    Returns
    -------
    Split
        Its ``val_*`` are the held-out tiles (``val_counts`` None when ``split`` has no
        ``train_counts``); it has no ``train_groups`` or ``train_counts``.
    """
    held = np.flatnonzero(folds == fold)
    kept = np.flatnonzero(folds != fold)
    masks = None
    if split.train_masks is not None:
        masks = np.concatenate([split.train_masks[kept], split.val_masks])
    points = held_points = None
    if split.train_points is not None:
        shifted = split.val_points.copy()
        shifted[:, 0] += len(kept)
        points = np.concatenate([select_points(split.train_points, kept), shifted])
        held_points = select_points(split.train_points, held)
    return Split(
        np.concatenate([split.train_images[kept], split.val_images]),
        masks,
        split.train_images[held],
        None if split.train_masks is None else split.train_masks[held],
        None if split.train_counts is None else split.train_counts[held],
        split.train_groups[held],
        points,
        held_points,
    )
