"""data.folds: the finalist folds keep every source image on one side."""

import numpy as np
import pytest

import data


def test_folds_keep_every_source_image_on_one_side():
    groups = np.repeat(np.arange(40), np.arange(40) % 4 + 1)
    for n_folds in (2, 3, 5):
        folds = data.assign_folds(groups, n_folds, seed=3)
        for g in np.unique(groups):
            assert len(np.unique(folds[groups == g])) == 1
        sizes = np.bincount(folds)
        assert len(sizes) == n_folds and sizes.max() - sizes.min() <= 4  # balanced in tiles
    with pytest.raises(ValueError, match="need 2 to 40 folds"):
        data.assign_folds(groups, 41)
