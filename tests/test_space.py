"""The search space's training length on the embedded set, and its definition per profile."""

import numpy as np
import pytest

import data
from data.split import split_groups
from model.train import TrainConfig, epoch_steps
from search import space


@pytest.fixture(scope="module")
def embedded_groups():
    with np.load(data.DEFAULT_TRAIN) as z:
        return z["groups"]


@pytest.mark.parametrize("profile", ["quick", "full"])
def test_embedded_trials_train_as_many_steps_as_before(embedded_groups, profile):
    # Before epochs had a minimum of steps, an epoch was one pass over the training split at batch 16:
    # the baseline and the warm start (and every trial) train exactly as many steps now, for any seed.
    p = space.PROFILES[profile]
    for seed in range(20):
        n_train = len(split_groups(embedded_groups, 0.2, seed)[0])
        for params in (space.seed_baseline(p), space.warm_start(p)):
            config = TrainConfig(**space.train_options(params, p))
            assert epoch_steps(n_train, config) == -(-n_train // space.BATCH_SIZE) == space.EPOCH_STEPS


def test_small_data_trains_as_long_as_the_embedded_set():
    quick = space.PROFILES["quick"]
    config = TrainConfig(**space.train_options(space.warm_start(quick), quick))
    assert epoch_steps(100, config) == epoch_steps(1151, config) == 72
    assert epoch_steps(5000, config) == 313  # a larger set still makes a whole pass


def test_a_fold_run_trains_as_many_steps_per_epoch_as_its_search_trial():
    quick = space.PROFILES["quick"]
    for n_search, n_fold in ((1151, 863), (5000, 3750), (100, 75)):
        search = TrainConfig(**space.train_options(space.seed_baseline(quick), quick))
        fold = TrainConfig(**space.train_options(space.seed_baseline(quick), space.fold_profile(quick, n_search)))
        assert epoch_steps(n_fold, fold) == epoch_steps(n_search, search)
