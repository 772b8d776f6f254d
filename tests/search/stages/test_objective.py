"""search.stages.objective: the split a study trains on, and the split of a finalist run's fold."""

import numpy as np
from helpers import disc_set, dots_file

import data
from data import split_groups
from search.stages import objective
from search.stages.objective import study_split


def test_true_counts_of_a_dots_file_without_counts_are_its_dots(tmp_path):
    arrays = disc_set(30, seed=1)
    split, source, _ = study_split(dots_file(tmp_path, counts=None), 0, 0.2, "image")
    _, val_idx = split_groups(np.arange(30) // 3, 0.2, 0)
    assert source == "the dots per tile ('points')"
    np.testing.assert_array_equal(split.val_counts, arrays["counts"][val_idx])


def test_fold_split_trains_on_the_other_folds_and_the_validation_images(tiny_files):
    train, _, _ = tiny_files
    split, _ = data.load_split(train, 0, 0.2)
    folds = data.assign_folds(split.train_groups, 2, 0)
    held = objective.fold_split(split, folds, 1)
    assert len(held.val_images) == np.count_nonzero(folds == 1)
    assert len(held.train_images) == np.count_nonzero(folds == 0) + len(split.val_images)
    np.testing.assert_array_equal(held.val_images, split.train_images[folds == 1])
    np.testing.assert_array_equal(held.train_images[-len(split.val_images) :], split.val_images)
    np.testing.assert_array_equal(held.val_counts, split.train_counts[folds == 1])
