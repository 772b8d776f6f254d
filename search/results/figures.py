"""The figures of a study's report: which to draw, how Optuna or ``model.plots`` draws each from the
study, and why one the study cannot support is left out. ``search.report`` embeds them in its page.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import optuna.visualization.matplotlib as ovm

from model import plots  # selects matplotlib's Agg backend, for Optuna's plots too
from search.roles import COMPLETE

TARGET_NAME = "val count-MAE"
SLICE_PARAMS = ("depth", "upsample", "offset")


@dataclass
class ReportFigure:
    """One report figure: its PNG file, or why it was left out."""

    name: str  # PNG file name
    title: str
    caption: str
    path: Path | None = None
    skipped: str | None = None


def varying_params(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """Parameters set in every trial that take more than one value across them."""
    common = set.intersection(*(set(t.params) for t in trials)) if trials else set()
    return sorted(p for p in common if len({repr(t.params[p]) for t in trials}) > 1)


def common_params(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """Parameters set in every trial (conditional ones left out), in the order of the first trial."""
    return [p for p in trials[0].params if all(p in t.params for t in trials)]


def offset_groups(trials: list[optuna.trial.FrozenTrial]) -> dict[str, list[float]]:
    """Each trial's MAE with its sampled counting at every offset, grouped by offset."""
    prefix = "val_mae_offset_"
    keys = sorted(
        {k for t in trials for k in t.user_attrs if k.startswith(prefix)}, key=lambda k: int(k[len(prefix) :])
    )
    return {k[len(prefix) :]: [t.user_attrs[k] for t in trials if k in t.user_attrs] for k in keys}


def _axes_figure(axes, size: tuple[float, float] | None = None):
    """The figure behind what an Optuna matplotlib plot returns (one Axes or an array of them)."""
    fig = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
    if size:
        fig.set_size_inches(*size)
    return fig


def report_figures(best: optuna.trial.FrozenTrial) -> list[ReportFigure]:
    """The figures of the report, in order, not drawn yet."""
    return [
        ReportFigure(
            "optimization_history.png",
            "Optimisation history",
            "Each complete trial's validation count-MAE and the best so far.",
        ),
        ReportFigure(
            "param_importances.png",
            "Parameter importances",
            "How much each parameter explains the validation count-MAE (Optuna's default evaluator).",
        ),
        ReportFigure(
            "parallel_coordinate.png",
            "Parallel coordinates",
            "Every complete trial's parameters, coloured by its validation count-MAE.",
        ),
        ReportFigure(
            "mae_by_depth_upsample_offset.png",
            "Count-MAE by depth, upsampling and offset",
            "The objective against the sampled depth and upsampling, and the offset when it is sampled "
            "(--objective sampled); with the tuned objective the offset is chosen after training, so see "
            "the next figure.",
        ),
        ReportFigure(
            "mae_by_offset.png",
            "Count-MAE by counting offset",
            "Each complete trial's validation MAE with its chosen counter at every offset.",
        ),
        ReportFigure(
            "best_counts.png",
            f"Best trial {best.number}: true against predicted counts",
            "Validation tiles, counted with the best trial's counting setting.",
        ),
    ]


def figure_plans(study: optuna.Study, best: optuna.trial.FrozenTrial) -> tuple[dict, dict]:
    """How to draw each figure (None when the study cannot support it), and why one is skipped."""
    complete = study.get_trials(deepcopy=False, states=(COMPLETE,))
    varying = varying_params(complete)
    counts = best.user_attrs.get("val_counts")
    offsets = offset_groups(complete)
    plans = {
        "optimization_history.png": lambda: _axes_figure(ovm.plot_optimization_history(study, target_name=TARGET_NAME)),
        "param_importances.png": None
        if len(complete) < 2 or not varying
        else lambda: _axes_figure(ovm.plot_param_importances(study, params=varying, target_name=TARGET_NAME)),
        "parallel_coordinate.png": lambda: _axes_figure(
            ovm.plot_parallel_coordinate(study, params=common_params(complete), target_name=TARGET_NAME),
            size=(14, 6),
        ),  # one axis per parameter: the default size overlaps their labels
        "mae_by_depth_upsample_offset.png": lambda: _axes_figure(
            ovm.plot_slice(study, params=[p for p in SLICE_PARAMS if p in best.params], target_name=TARGET_NAME)
        ),
        "mae_by_offset.png": None
        if not offsets
        else lambda: plots.box_figure(offsets, "Count-MAE by offset (chosen counter)", "offset", "val count-MAE"),
        "best_counts.png": None
        if not counts
        else lambda: plots.count_scatter_figure(
            counts["true"], counts["pred"], f"trial {best.number}: {best.user_attrs.get('counting_name', '')}"
        ),
    }
    reasons = {
        "param_importances.png": "needs at least 2 complete trials whose parameters differ",
        "mae_by_offset.png": "no trial recorded its MAE by offset",
        "best_counts.png": f"trial {best.number} did not record its per-tile validation counts",
    }
    return plans, reasons


def draw_figures(study: optuna.Study, out: Path) -> list[ReportFigure]:
    """Draw every report figure into ``out``; a figure the study cannot support is skipped with a reason."""
    best = study.best_trial
    figures = report_figures(best)
    draw = {f.name: f for f in figures}
    with warnings.catch_warnings():
        # Optuna marks its matplotlib plots experimental; the notice is noise here.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # A single trial gives an axis of one value; matplotlib widens it and says so.
        warnings.filterwarnings("ignore", "Attempting to set identical", UserWarning)
        # When its top trials are all the trials (few, or tied), Optuna's importance evaluator
        # warns and draws equal bars: the figure is left out with its reason instead.
        warnings.filterwarnings("error", ".*Parameter importances will be equal", UserWarning)
        plans, reasons = figure_plans(study, best)
        for name, plan in plans.items():
            if plan is None:
                draw[name].skipped = reasons[name]
                continue
            try:
                draw[name].path = plots.save_png(plan(), out / name)
            except (RuntimeError, ValueError, UserWarning) as exc:  # e.g. an importance evaluator on degenerate trials
                draw[name].skipped = f"Optuna could not draw it: {str(exc).rstrip('.')}"
    return figures
