"""model.plots: the figures are PNGs, and the tiles shown span the counts."""

import numpy as np
from helpers import disc_tiles

from model.plots import count_scatter_figure, learning_curve_figure, overlay_figure, pick_tiles, save_png
from model.train import EpochReport

PNG = b"\x89PNG"


def test_figures_are_pngs(tmp_path):
    images, masks, counts = disc_tiles(5)
    history = [EpochReport(e, 1 / e, 1.2 / e, 3 - e, 0.1) for e in (1, 2)]
    figures = {
        "curve": learning_curve_figure(history),
        # An all-zero map has no outline to draw: must not fail.
        "overlay": overlay_figure(
            images, np.where(np.arange(5)[:, None, None] > 0, masks, 0), 0.5, counts, counts + 1, n=4
        ),
        "scatter": count_scatter_figure(counts, counts + 1, "t"),
    }
    for name, fig in figures.items():
        assert save_png(fig, tmp_path / "sub" / f"{name}.png").read_bytes().startswith(PNG)


def test_pick_tiles_spans_the_counts():
    counts = np.array([5, 0, 9, 2, 7])
    assert pick_tiles(counts, 3).tolist() == [1, 0, 2]  # emptiest, middle, most crowded
    assert sorted(pick_tiles(counts, 10).tolist()) == [0, 1, 2, 3, 4]
