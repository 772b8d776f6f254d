"""The search space: training length on the embedded set and per profile, dots targets, counting grids."""

import numpy as np
import optuna
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
        for params in (space.reference_config(p), space.warm_start(p)):
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
        search = TrainConfig(**space.train_options(space.reference_config(quick), quick))
        fold = TrainConfig(**space.train_options(space.reference_config(quick), space.fold_profile(quick, n_search)))
        assert epoch_steps(n_fold, fold) == epoch_steps(n_search, search)


def test_counting_grid_follows_what_the_trial_trained():
    density = space.counting_grid(density=True)
    assert density == [{"counter": "density", "offset": o} for o in range(-1, 3)]
    assert space.monitor_settings(density=True) == density
    probabilities = space.counting_grid()
    assert len(probabilities) == 156 and {s["counter"] for s in probabilities} == {"components", "watershed"}
    assert space.REFERENCE_COUNTING in probabilities and space.REFERENCE_COUNTING not in density


def suggested(params, annotation="dots", mode="tuned"):
    """What ``space.suggest`` draws in a trial whose parameters are fixed to ``params``."""
    study = optuna.create_study()
    study.enqueue_trial(params)
    trial = study.ask()
    return space.suggest(trial, space.PROFILES["quick"], mode, annotation)


def test_dots_trials_draw_a_target_and_only_its_size():
    assert space.reference_config(space.PROFILES["quick"], annotation="dots")[space.TARGET] == "disks"
    assert space.warm_start(space.PROFILES["quick"], "dots")[space.TARGET] == "disks"
    density = suggested({space.TARGET: "density", space.SIGMA: 2.5})
    assert density[space.SIGMA] == 2.5 and space.RADIUS not in density
    disks = suggested({space.TARGET: "disks"})
    assert space.TARGET_RADII[0] <= disks[space.RADIUS] <= space.TARGET_RADII[1] and space.SIGMA not in disks
    assert space.target_text(density) == "density maps of Gaussians of sigma 2.50 px at the centres"
    assert TrainConfig(**space.train_options(density, space.PROFILES["quick"])).loss == "mse"
    assert TrainConfig(**space.train_options(disks, space.PROFILES["quick"])).loss == "bce"
    masks = suggested({}, annotation="masks")
    assert space.TARGET not in masks and space.RADIUS not in masks and space.SIGMA not in masks


def test_a_file_with_masks_and_centres_draws_the_mask_among_the_targets():
    quick = space.PROFILES["quick"]
    assert space.reference_config(quick, annotation="masks+dots")[space.TARGET] == "mask"
    assert space.reference_config(quick, "sampled", "masks+dots")["counter"] == "components"
    warm = space.warm_start(quick, "masks+dots")
    assert (warm[space.TARGET], warm[space.RADIUS]) == ("disks", space.DEFAULT_RADIUS)
    assert space.warm_start(quick, "masks+dots", crowded=True)[space.TARGET] == "density"
    mask = suggested({space.TARGET: "mask"}, annotation="masks+dots")
    assert space.RADIUS not in mask and space.SIGMA not in mask and not space.trains_from_centres(mask)
    assert TrainConfig(**space.train_options(mask, quick)).loss == "bce"
    assert space.target_text(mask) == "the soft masks"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {space.suggest(study.ask(), quick, annotation="masks+dots")[space.TARGET] for _ in range(30)}
    assert drawn == {"mask", "disks", "density"}
    # A dots file never draws the mask it does not have.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dots = {space.suggest(study.ask(), quick, annotation="dots")[space.TARGET] for _ in range(30)}
    assert dots == {"disks", "density"}


def test_sampled_counting_of_a_density_trial_is_the_density_counter():
    params = suggested({space.TARGET: "density", "offset": 1}, mode="sampled")
    assert "counter" not in params and space.counting_of(params) == {"counter": "density", "offset": 1}
    assert space.counting_of(params) in space.counting_grid(density=True)
    disks = suggested({space.TARGET: "disks", "counter": "components"}, mode="sampled")
    assert space.counting_of(disks) in space.counting_grid()
