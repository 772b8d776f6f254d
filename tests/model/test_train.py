"""model.train on tiny disc tiles and a 2-4 channel U-Net: losses, schedules, epochs, seeds, augmentation."""

import time

import numpy as np
import pytest
import torch
from helpers import CPU, disc_tiles, tiny_net

import model.train as train_module
from model.device import to_tensor
from model.infer import DENSITY_SCALE, predict_prob
from model.targets import density_targets
from model.train import (
    EpochReport,
    TrainConfig,
    dihedral,
    epoch_steps,
    fit,
    loss_fn,
    make_scheduler,
)


@pytest.fixture(scope="module")
def train_set():
    images, masks, _ = disc_tiles(8, seed=1)
    return images, masks


@pytest.fixture(scope="module")
def val_set():
    images, masks, _ = disc_tiles(4, seed=2)
    return images, masks


def test_fit_lowers_loss_and_reports_each_epoch(train_set):
    reports = []
    result = fit(tiny_net(), TrainConfig(lr=1e-2, epochs=3, batch_size=4), *train_set, on_epoch=reports.append)
    assert [r.epoch for r in reports] == [1, 2, 3]
    assert all(isinstance(r, EpochReport) for r in reports)
    assert [r.epoch for r in result.history] == [1, 2, 3]
    assert all(np.isfinite(r.train_loss) for r in result.history)
    assert result.history[0].train_loss > result.history[-1].train_loss
    assert result.train_seconds > 0


def test_a_run_validated_once_scores_its_last_epoch_only(train_set, val_set):
    config = TrainConfig(lr=1e-3, epochs=3, batch_size=8)
    scored = []
    once = fit(tiny_net(), config, *train_set, *val_set, score_fn=lambda p: scored.append(p) or 1.0, every_epoch=False)
    assert len(scored) == 1 and [np.isnan(r.val_loss) for r in once.history] == [True, True, False]
    assert [r.val_mae for r in once.history][-1] == 1.0
    # The same weights and last-epoch prediction as a run validated every epoch.
    every = fit(tiny_net(), config, *train_set, *val_set, score_fn=lambda p: 1.0)
    np.testing.assert_array_equal(once.val_prob, every.val_prob)


def test_exception_in_on_epoch_stops_training(train_set):
    calls = []

    class Prune(Exception):
        pass

    def on_epoch(report):
        calls.append(report.epoch)
        if report.epoch == 2:
            raise Prune

    with pytest.raises(Prune):
        fit(tiny_net(), TrainConfig(lr=1e-3, epochs=3, batch_size=8), *train_set, on_epoch=on_epoch)
    assert calls == [1, 2]


def test_keeps_last_epoch_and_reports_every_score(train_set, val_set):
    scores = iter([3.0, 1.0, 2.0])
    probs = []

    def score_fn(prob):
        probs.append(prob.copy())
        return next(scores)

    net = tiny_net()
    result = fit(net, TrainConfig(lr=1e-2, epochs=3, batch_size=4), *train_set, *val_set, score_fn=score_fn)
    assert [r.val_mae for r in result.history] == [3.0, 1.0, 2.0]
    assert all(np.isfinite(r.val_loss) for r in result.history)
    assert result.val_prob.shape == (4, 32, 32)
    assert result.val_prob.min() >= 0 and result.val_prob.max() <= 1
    # The last epoch is kept even though epoch 2 scored better: no picking the luckiest epoch.
    np.testing.assert_array_equal(result.val_prob, probs[2])
    final = net.state_dict()
    assert all(torch.equal(result.state_dict[k], final[k]) for k in final)
    np.testing.assert_allclose(predict_prob(net, val_set[0], loss="bce"), probs[2], atol=1e-6)


def test_without_validation_keeps_last_epoch(train_set):
    net = tiny_net()
    result = fit(net, TrainConfig(lr=1e-2, epochs=2, batch_size=4), *train_set)
    assert result.val_prob is None
    assert np.isnan(result.history[-1].val_mae)
    final = net.state_dict()
    assert result.state_dict.keys() == final.keys()
    assert all(torch.equal(result.state_dict[k], final[k]) for k in final)


def test_cosine_schedule_decays_to_zero(train_set):
    config = TrainConfig(lr=1e-2, epochs=3, batch_size=4, schedule="cosine")
    rates = []
    net = tiny_net()
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    steps = 3 * -(-len(train_set[0]) // 4)
    scheduler = make_scheduler(opt, config, steps)
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    assert rates[0] == pytest.approx(1e-2)
    assert all(a > b for a, b in zip(rates, rates[1:]))  # strictly decreasing
    assert opt.param_groups[0]["lr"] == pytest.approx(0, abs=1e-12)
    assert make_scheduler(opt, TrainConfig(), steps) is None  # constant: the reference's


def test_cosine_schedule_changes_training(train_set):
    runs = [
        fit(tiny_net(0), TrainConfig(lr=1e-2, epochs=2, batch_size=4, schedule=s), *train_set).state_dict
        for s in ("constant", "cosine")
    ]
    assert not all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


def _train(train_set, seed):
    config = TrainConfig(lr=1e-2, epochs=2, batch_size=4, augment=True, seed=seed)
    return fit(tiny_net(seed), config, *train_set).state_dict


def test_same_seed_is_reproducible_and_other_seed_differs(train_set):
    a, b, c = _train(train_set, 0), _train(train_set, 0), _train(train_set, 1)
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_same_init_different_train_seed_differs(train_set):
    # Only TrainConfig.seed changes (shuffle/augment), not the initial weights.
    runs = []
    for seed in (0, 1):
        config = TrainConfig(lr=1e-2, epochs=1, batch_size=2, augment=True, seed=seed)
        runs.append(fit(tiny_net(0), config, *train_set).state_dict)
    assert not all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_augment_changes_what_is_trained_on(train_set):
    # Same initial weights and seed: augmentation must change what the net is trained on.
    runs = [
        fit(tiny_net(0), TrainConfig(lr=1e-2, epochs=1, batch_size=4, augment=a), *train_set) for a in (False, True)
    ]
    assert all(np.isfinite(r.history[0].train_loss) for r in runs)
    assert not all(torch.equal(runs[0].state_dict[k], runs[1].state_dict[k]) for k in runs[0].state_dict)


def test_dihedral_transforms_image_and_mask_alike():
    x = torch.rand(64, 1, 16, 16)
    xa, ya = dihedral(x, x.clone(), torch.Generator().manual_seed(0))
    assert xa.shape == x.shape
    assert torch.equal(xa, ya)
    changed = [not torch.equal(xa[i], x[i]) for i in range(len(x))]
    assert any(changed) and not all(changed)  # identity is one of the 8 draws
    # Every output tile is a flip/rotation of its input: same multiset of pixels.
    assert torch.equal(xa.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_dihedral_results_are_dihedral_images():
    x = torch.rand(32, 1, 8, 8)
    xa, _ = dihedral(x, x.clone(), torch.Generator().manual_seed(1))
    for i in range(len(x)):
        views = [torch.rot90(v, k, dims=(-2, -1)) for k in range(4) for v in (x[i], x[i].flip(-1))]
        assert any(torch.equal(xa[i], v) for v in views)


def one_pass_epochs(net, config, images, masks):
    """The weights after ``config.epochs`` plain shuffled passes: the training loop before epochs had steps."""
    generator = torch.Generator().manual_seed(config.seed)
    x, y = to_tensor(images, CPU), to_tensor(masks, CPU)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    scheduler = make_scheduler(opt, config, config.epochs * -(-len(x) // config.batch_size))
    for _ in range(config.epochs):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            train_module.train_step(net, opt, x[idx], y[idx], config, "fp32", generator)
            scheduler.step()
    return net.state_dict()


@pytest.mark.parametrize("min_steps", [1, 3])
def test_epoch_of_one_pass_trains_as_before(train_set, min_steps):
    # 8 tiles at batch 3 are 3 steps, the last one short: as many as (or more than) the minimum,
    # so an epoch is one plain pass and training is what it was, draw for draw.
    config = TrainConfig(
        lr=1e-2, epochs=2, batch_size=3, augment=True, schedule="cosine", min_epoch_steps=min_steps, precision="fp32"
    )
    assert epoch_steps(len(train_set[0]), config) == 3
    new = fit(tiny_net(0), config, *train_set).state_dict
    old = one_pass_epochs(tiny_net(0), config, *train_set)
    assert all(torch.equal(new[k], old[k]) for k in old)


def test_small_set_trains_as_many_steps_as_a_large_one(monkeypatch, train_set):
    seen = []
    real_step = train_module.train_step

    def step(net, opt, xb, *args):
        seen.append(len(xb))
        return real_step(net, opt, xb, *args)

    monkeypatch.setattr(train_module, "train_step", step)
    images, masks = train_set
    config = TrainConfig(lr=1e-3, epochs=2, batch_size=4, min_epoch_steps=6)
    steps = {}
    for n in (2, 8, 24):
        seen.clear()
        reps = -(-n // len(images))
        result = fit(tiny_net(), config, np.tile(images, (reps, 1, 1))[:n], np.tile(masks, (reps, 1, 1))[:n])
        steps[n] = len(seen)
        assert len(result.history) == 2 and all(np.isfinite(r.train_loss) for r in result.history)
        if n == 8:  # 6 steps of 4 tiles an epoch: 3 whole passes, every tile 3 times
            assert seen == [4] * 12
    assert steps == {2: 12, 8: 12, 24: 12}  # 6 steps an epoch at any size up to a pass of 6 batches
    seen.clear()
    fit(tiny_net(), config, np.tile(images, (4, 1, 1)), np.tile(masks, (4, 1, 1)))
    assert len(seen) == 2 * 8  # 32 tiles: a whole pass of 8 batches, more than the minimum


def test_density_net_regresses_the_scaled_map_and_predicts_it_scaled_back(train_set):
    images, _ = train_set
    points = np.array([[i, 10 + i, 16] for i in range(len(images))], float)
    density = density_targets(points, len(images), images.shape[1:], 2)
    config = TrainConfig(lr=1e-2, epochs=3, batch_size=4, loss="mse", precision="fp32")
    net = tiny_net()
    result = fit(net, config, images, density, images, density)
    assert result.history[-1].train_loss < result.history[0].train_loss
    # The map is the raw output over the scale (no sigmoid: it may leave [0, 1]), as the export predicts it.
    raw = net.eval()(to_tensor(images, CPU)).detach()[:, 0].numpy()
    np.testing.assert_allclose(result.val_prob, raw / DENSITY_SCALE, atol=1e-5)
    np.testing.assert_allclose(predict_prob(net, images, precision="fp32", loss="mse"), result.val_prob, atol=1e-5)
    target = to_tensor(density, CPU)
    assert float(loss_fn(target * DENSITY_SCALE, target, "mse")) == 0


def test_bce_dice_exceeds_bce():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 32, 32)
    target = (torch.rand(3, 1, 32, 32) > 0.7).float()
    bce, bce_dice = loss_fn(logits, target, "bce"), loss_fn(logits, target, "bce_dice")
    assert bce.ndim == 0 and bce > 0
    assert bce_dice > bce
    assert float(bce_dice - bce) <= 1.0  # soft Dice loss is in [0, 1]


def test_dice_term_near_zero_for_perfect_prediction():
    target = torch.zeros(1, 1, 32, 32)
    target[..., 8:16, 8:16] = 1
    logits = (target * 2 - 1) * 50
    diff = loss_fn(logits, target, "bce_dice") - loss_fn(logits, target, "bce")
    assert abs(float(diff)) < 1e-3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"loss": "xx"}, "loss must be one of"),
        ({"lr": 0}, "lr must be positive, got 0"),
        ({"epochs": 0}, "must be at least 1"),
        ({"batch_size": 0}, "must be at least 1"),
        ({"min_epoch_steps": 0}, "must be at least 1"),
    ],
)
def test_invalid_train_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_steady_seconds_leave_out_the_first_steps_set_up(train_set, monkeypatch):
    real_step, calls = train_module.train_step, []

    def slow_first_step(*args):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.5)  # a process's first step: kernels chosen, memory grown
        return real_step(*args)

    monkeypatch.setattr(train_module, "train_step", slow_first_step)
    config = TrainConfig(lr=1e-3, epochs=2, batch_size=2, min_epoch_steps=8)
    first, second = fit(tiny_net(), config, *train_set).history
    assert first.seconds > 0.5 and first.steady_seconds < first.seconds - 0.4
    assert second.steady_seconds == pytest.approx(second.seconds, abs=0.2)
