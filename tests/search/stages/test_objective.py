"""search.stages.objective: the split a study trains on, and the split of a finalist run's fold."""

import numpy as np
from helpers import disc_set, dots_file

import data
from data import split_groups
from model.targets import disk_targets
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


def test_a_file_with_masks_and_centres_trains_the_target_its_trial_drew(tmp_path):
    arrays = disc_set(30, seed=1)
    path = tmp_path / "both.npz"
    np.savez(path, X=arrays["X"], y=arrays["y"], counts=arrays["counts"], points=arrays["points"])
    split, _, _ = study_split(path, 0, 0.2, "image")
    folds = data.assign_folds(split.train_groups, 2, 0)
    for s in (split, objective.fold_split(split, folds, 0)):  # a finalist run has both too
        assert s.annotation == "masks+dots"
        mask = objective.training_targets(s.train_images, s.train_masks, s.train_points, {"target": "mask"})
        assert mask is s.train_masks
        disks = {"target": "disks", "target_radius": 2}
        drawn = objective.training_targets(s.train_images, s.train_masks, s.train_points, disks)
        np.testing.assert_array_equal(drawn, disk_targets(s.train_points, len(s.train_images), (32, 32), 2))
        density = {"target": "density", "target_sigma": 1.5}
        summed = objective.training_targets(s.train_images, s.train_masks, s.train_points, density).sum((1, 2))
        assert np.allclose(summed, data.point_counts(s.train_points, len(s.train_images)), atol=0.05)
