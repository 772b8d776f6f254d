"""data.tiling: the windows that cover an image, and the scale chosen from the cells' size."""

import numpy as np
import pytest
from helpers import disc_labels

from data.tiling import choose_scale, window_starts

T = 32  # tile side of the window tests


@pytest.mark.parametrize("size", [1, 20, 31, 32, 33, 64, 70, 100, 300])
def test_windows_cover_every_pixel_last_flush(size):
    starts = window_starts(size, T)
    covered = np.zeros(max(size, T), bool)
    for s in starts:
        covered[s : s + T] = True
    assert covered[:size].all()
    assert starts[0] == 0 and starts[-1] == max(size - T, 0)
    assert (np.diff(starts)[:-1] == T).all() and (np.diff(starts) <= T).all()


def test_choose_scale_from_known_discs():
    areas = [np.count_nonzero(disc_labels((80, 80), [(40, 40)], r)) for r in (15, 15, 15)]
    assert choose_scale(areas) == pytest.approx(11 / 30, rel=0.03)
    assert choose_scale(areas, object_size=30) == 1.0
