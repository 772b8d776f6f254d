"""model.stitch: whole images predicted window by window with no seam, in bounded memory."""

import tracemalloc

import numpy as np
import pytest
from helpers import as_prob

from model.count import count_setting
from model.stitch import stitch_predict, window_origins, window_weights

T = 32  # window side of the stitching tests


def ramp(shape):
    """A linear ramp of the global coordinates (uint8: it wraps only past 255)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((rows + 2 * cols) % 256).astype(np.uint8)


@pytest.mark.parametrize("shape", [(T, T), (100, 70), (64, 96), (20, 45), (7, 7)])
def test_stitched_ramp_is_the_ramp_with_no_seam(shape):
    image = ramp(shape)
    assert np.allclose(stitch_predict(image, as_prob, T, batch_size=3), image / 255, atol=1e-6)


def test_constant_stitches_to_the_constant_and_overlaps_blend():
    calls = []

    def window_index(windows):
        """Each window predicts its own number: a seam would show as a jump between two of them."""
        calls.extend(range(len(calls), len(calls) + len(windows)))
        return np.array(calls[-len(windows) :], np.float32)[:, None, None] * np.ones((1, T, T), np.float32)

    image = np.zeros((100, 100), np.uint8)
    assert np.allclose(stitch_predict(image, lambda w: np.full(w.shape, 0.25, np.float32), T), 0.25)
    blended = stitch_predict(image, window_index, T, batch_size=5)
    rows, cols = window_origins(image.shape, T)
    assert len(calls) == len(rows) * len(cols)
    # Values move smoothly from window to window: the largest step between neighbouring pixels is
    # a small part of the step between neighbouring windows' values (1 along a row, len(cols) down).
    assert np.abs(np.diff(blended, axis=1)).max() < 0.25
    assert np.abs(np.diff(blended, axis=0)).max() < 0.25 * len(cols)
    # A pixel in an overlap takes values from both windows.
    assert 0 < blended[10, T // 2 + 4] < 1


def test_window_weights_partition_of_unity_and_positive_edges():
    w = window_weights(T)
    assert w.min() > 0 and np.allclose(w[: T // 2] + w[T // 2 :], 1)
    rows, cols = window_origins((100, 40), T)
    assert rows.tolist() == [0, 16, 32, 48, 64, 68] and cols.tolist() == [0, 8]


def test_cell_on_a_window_edge_is_counted_once():
    image = np.zeros((64, 96), np.uint8)
    rows, cols = np.mgrid[:64, :96]
    image[(rows - 30) ** 2 + (cols - T) ** 2 <= 16] = 200  # centred on the first windows' right edge
    prob = stitch_predict(image, as_prob, T)
    for counter in ({"counter": "components", "threshold": 0.5}, {"counter": "watershed", "threshold": 0.5}):
        assert count_setting(prob, counter).tolist() == [1]
    # Counted per window instead, the cut cell would count in two windows.
    assert count_setting(np.stack([prob[:T, :T], prob[:T, T : 2 * T]]), {"counter": "components"}).sum() == 2


def test_4000_by_4000_stitching_memory_is_bounded():
    """The stitcher's own arrays for a 4000x4000 image: the image, its map, one batch (~100 MB)."""
    image = np.zeros((4000, 4000), np.uint8)
    tracemalloc.start()
    try:
        prob = stitch_predict(image, lambda w: np.zeros(w.shape, np.float32), 128)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert prob.shape == (4000, 4000)
    assert peak < 256 * 2**20, f"peak {peak / 2**20:.0f} MiB"
