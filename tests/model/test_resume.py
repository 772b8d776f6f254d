"""model.resume through model.train.fit: a run stopped after any epoch continues to the same weights, bit for bit."""

import numpy as np
import pytest
import torch
from helpers import disc_tiles, tiny_net

from model.resume import BatchStream, discard_state, load_state
from model.train import TrainConfig, fit


class Stop(Exception):
    pass


def stop_after(epoch):
    def on_epoch(report):
        if not report.restored and report.epoch == epoch:
            raise Stop

    return on_epoch


@pytest.fixture(scope="module")
def tiles():
    images, masks, _ = disc_tiles(10, seed=3)
    val_images, val_masks, _ = disc_tiles(4, seed=4)
    return images, masks, val_images, val_masks


# Cosine schedule, augmentation and epochs that end mid-pass: every stateful part is exercised.
CONFIG = TrainConfig(lr=3e-3, epochs=4, batch_size=4, min_epoch_steps=4, augment=True, schedule="cosine", seed=5)


@pytest.mark.parametrize("stopped_after", [1, 3, 4])
def test_a_run_stopped_after_an_epoch_resumes_to_the_same_weights_bit_for_bit(tiles, tmp_path, stopped_after):
    whole = fit(tiny_net(), CONFIG, *tiles, score_fn=lambda p: float(p.sum()))
    state = tmp_path / "run.pt"
    with pytest.raises(Stop):
        fit(tiny_net(), CONFIG, *tiles, score_fn=lambda p: float(p.sum()), on_epoch=stop_after(stopped_after),
            state_path=state)  # fmt: skip
    seen = []
    # A fresh net of another seed: every weight must come from the saved state.
    resumed = fit(tiny_net(seed=9), CONFIG, *tiles, score_fn=lambda p: float(p.sum()), on_epoch=seen.append,
                  state_path=state)  # fmt: skip
    assert [r.restored for r in seen] == [True] * stopped_after + [False] * (CONFIG.epochs - stopped_after)
    for key, value in whole.state_dict.items():
        assert torch.equal(value, resumed.state_dict[key]), key
    np.testing.assert_array_equal(whole.val_prob, resumed.val_prob)
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in whole.history]
    assert [r.val_mae for r in resumed.history] == [r.val_mae for r in whole.history]


def test_a_state_of_another_run_or_data_is_not_continued(tiles, tmp_path):
    state = tmp_path / "run.pt"
    with pytest.raises(Stop):
        fit(tiny_net(), CONFIG, *tiles, on_epoch=stop_after(2), state_path=state)
    other = TrainConfig(**{**CONFIG.to_dict(), "lr": 1e-3})
    seen = []
    fit(tiny_net(), other, *tiles, on_epoch=seen.append, state_path=state)
    assert not any(r.restored for r in seen) and len(seen) == other.epochs
    images, masks, *_ = tiles
    assert load_state(state, {"other": "signature"}) is None
    seen.clear()
    fit(tiny_net(), other, images[:6], masks[:6], on_epoch=seen.append, state_path=state)
    assert not any(r.restored for r in seen)


def test_a_truncated_state_starts_afresh_and_discard_removes_it(tiles, tmp_path):
    state = tmp_path / "run.pt"
    state.write_bytes(b"not a torch file")
    seen = []
    fit(tiny_net(), CONFIG, *tiles[:2], on_epoch=seen.append, state_path=state)
    assert [r.epoch for r in seen] == [1, 2, 3, 4] and not any(r.restored for r in seen)
    discard_state(state)
    discard_state(state)  # gone already: no error
    assert not state.exists()


def test_batch_stream_restored_mid_pass_draws_the_same_batches():
    a = BatchStream(10, 4, torch.device("cpu"), torch.Generator().manual_seed(0))
    first = [next(a) for _ in range(4)]  # one pass and the start of the next
    saved, gen_state = a.state_dict(), a.generator.get_state()
    rest = [next(a) for _ in range(5)]
    b = BatchStream(10, 4, torch.device("cpu"), torch.Generator())
    b.load_state_dict(saved)
    b.generator.set_state(gen_state)
    assert [len(x) for x in first] == [4, 4, 2, 4]
    assert all(torch.equal(x, y) for x, y in zip(rest, (next(b) for _ in range(5))))
