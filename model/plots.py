"""Draw training and counting figures as PNG files (matplotlib, Agg backend).

Each ``*_figure`` function takes plain arrays and returns a matplotlib ``Figure``;
:func:`save_png` writes and releases it. :func:`count_overlay_png` marks the counted
cells on a whole image at its own size (cv2, no resampling). Nothing here knows about
Optuna: the search decides what to draw and where it goes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

# Files only, never a window: works on headless machines and in worker threads.
matplotlib.use("Agg")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from model.train import EpochReport  # noqa: E402

DPI = 100

MARK_COLOUR = (0, 0, 255)  # BGR red: no grey pixel has it
MARK_RADIUS = 3  # px: inside the embedded set's nuclei (8-14 px across), so a mark shows its own cell
CAPTION_HEIGHT = 22  # px of the black band above the image that holds the caption


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` as PNG (folders created) and free it.

    Parameters
    ----------
    fig : Figure
        Any figure, ours or one made through pyplot (e.g. Optuna's plots).
    path : Path
        Where to write.

    Returns
    -------
    path : Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)  # a no-op for figures pyplot does not manage
    return path


def learning_curve_figure(history: list[EpochReport]) -> Figure:
    """Train and validation loss (left) and validation count-MAE (right) per epoch.

    Parameters
    ----------
    history : list of EpochReport
        One report per epoch, in order; the last epoch's weights are the ones kept.
    """
    epochs = [r.epoch for r in history]
    fig = Figure(figsize=(9, 3.4))
    loss_ax, mae_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r.train_loss for r in history], "o-", label="train loss")
    loss_ax.plot(epochs, [r.val_loss for r in history], "s-", label="val loss")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_ax.legend()
    mae_ax.plot(epochs, [r.val_mae for r in history], "o-", color="tab:red")
    mae_ax.set(xlabel="epoch", ylabel="count MAE", title="Validation count-MAE")
    for ax in (loss_ax, mae_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def pick_tiles(true_counts: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` tiles spread from the emptiest to the most crowded (fewer if there are fewer)."""
    order = np.argsort(np.asarray(true_counts), kind="stable")
    return order[np.unique(np.linspace(0, len(order) - 1, min(n, len(order))).round().astype(int))]


def overlay_figure(
    images: np.ndarray,
    prob: np.ndarray,
    threshold: float | None,
    true_counts: np.ndarray,
    pred_counts: np.ndarray,
    n: int = 6,
) -> Figure:
    """Tiles with the outline of their predicted mask and the true and predicted counts.

    Parameters
    ----------
    images : ndarray, shape (N, H, W)
        Tiles (uint8 or float).
    prob : ndarray, shape (N, H, W)
        Predicted nucleus probabilities; outlined at ``threshold``, the counted mask.
    threshold : float or None
        The counting threshold; None (a density map, counted by its sum) draws no outline.
    true_counts, pred_counts : ndarray, shape (N,)
        Shown in each tile's title.
    n : int, optional
        Tiles to show, picked by :func:`pick_tiles`.
    """
    idx = pick_tiles(true_counts, n)
    cols = min(3, len(idx))
    rows = -(-len(idx) // cols)
    fig = Figure(figsize=(3 * cols, 3.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, i in zip(axes, idx):
        ax.imshow(images[i], cmap="gray")
        # contour() warns on a map with no level crossing: draw only where there is one.
        if threshold is not None and prob[i].min() <= threshold < prob[i].max():
            ax.contour(prob[i], levels=[threshold], colors="yellow", linewidths=0.8)
        error = int(pred_counts[i]) - int(true_counts[i])
        ax.set_title(f"tile {i}: true {int(true_counts[i])}, pred {int(pred_counts[i])} ({error:+d})", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def count_overlay_png(image: np.ndarray, centroids: np.ndarray, caption: str) -> bytes:
    """A grey image with a red circle at every counted cell and a caption above it, as PNG.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W)
        The image as it was counted; drawn at its own size.
    centroids : ndarray, shape (K, 2)
        ``(row, col)`` of each counted cell (see :func:`model.count.object_centroids`).
    caption : str
        Written in white on a black band of ``CAPTION_HEIGHT`` px above the image; the
        canvas is widened (black on the right) when the caption is wider than the image.

    Returns
    -------
    png : bytes
        An 8-bit BGR PNG of ``(CAPTION_HEIGHT + H, max(W, caption width))`` pixels.
    """
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    (text_width, _), _ = cv2.getTextSize(caption, font, size, 1)
    h, w = image.shape
    canvas = np.zeros((CAPTION_HEIGHT + h, max(w, text_width + 8), 3), np.uint8)
    canvas[CAPTION_HEIGHT:, :w] = image[..., None]
    for row, col in np.rint(np.asarray(centroids).reshape(-1, 2)).astype(int):
        # Plain 8-connected lines, not anti-aliased: every mark pixel is exactly MARK_COLOUR.
        cv2.circle(canvas, (int(col), int(row) + CAPTION_HEIGHT), MARK_RADIUS, MARK_COLOUR, 1, cv2.LINE_8)
    cv2.putText(canvas, caption, (4, CAPTION_HEIGHT - 6), font, size, (255, 255, 255), 1, cv2.LINE_AA)
    return cv2.imencode(".png", canvas)[1].tobytes()


def count_scatter_figure(true_counts: np.ndarray, pred_counts: np.ndarray, title: str, unit: str = "tiles") -> Figure:
    """Predicted against true count per tile (or per ``unit``), with the identity line and the MAE in the title."""
    true_counts, pred_counts = np.asarray(true_counts), np.asarray(pred_counts)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    # Jitter-free, but translucent: many tiles share the same integer pair.
    ax.scatter(true_counts, pred_counts, alpha=0.4, s=18)
    top = max(int(true_counts.max(initial=0)), int(pred_counts.max(initial=0))) + 1
    low = min(0, int(pred_counts.min(initial=0)))
    ax.plot([low, top], [low, top], color="grey", linestyle="--", linewidth=1)
    mae = float(np.abs(pred_counts - true_counts).mean()) if len(true_counts) else float("nan")
    ax.set(
        xlabel="true count",
        ylabel="predicted count",
        title=f"{title}\nMAE {mae:.3f} on {len(true_counts)} {unit}",
        xlim=(low - 0.5, top + 0.5),
        ylim=(low - 0.5, top + 0.5),
        aspect="equal",
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def box_figure(groups: dict[str, list[float]], title: str, xlabel: str, ylabel: str) -> Figure:
    """One box (with the points on it) per named group of values, in the dict's order."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    names = list(groups)
    ax.boxplot([groups[k] for k in names], tick_labels=names, showfliers=False)  # every point is drawn
    for x, k in enumerate(names, start=1):
        ax.plot(np.full(len(groups[k]), x), groups[k], "o", alpha=0.5, color="tab:blue", markersize=4)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
