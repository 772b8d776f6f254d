"""Write a static, self-contained HTML report of a study, with its figures as PNG files.

    python -m search.report                          # study 'cells' -> reports/cells/report.html
    python -m search.report --study-name cells --storage sqlite:///studies/cells.db --out reports/cells

The report shows the optimisation history, parameter importances, a parallel-coordinate plot,
the count-MAE by depth, upsampling and offset, the best trial's true-against-predicted counts on
validation, and a table of the top trials. It reads only the study storage: no network, no data
file, no GPU. The figures are drawn by ``search.results.figures``; this module writes the page.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path

import optuna
import pandas as pd

from search import cli
from search.errors import UsageError
from search.results.figures import ReportFigure, draw_figures
from search.results.verdict import baseline_line, finalist_rows, finalist_text, gain_line, mae_text, table_cell
from search.roles import COMPLETE, is_baseline
from search.runtime.storage import check_study_name, find_storage, given_storage, load_existing_study, safe_url
from search.stages import finalists

TOP_N = 10


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.parser(
        "python -m search.report",
        "Write an HTML report (with PNG figures) of a study.",
        "studies/<name>.db, or studies/<name>.journal.log when only that exists",
        device=False,
    )
    p.add_argument("--out", type=Path, help="folder to write (default: reports/<name>)")
    return p.parse_args(argv)


def load_finished_study(study_name: str, storage_url: str) -> optuna.Study:
    """The study, checked to have at least one complete trial."""
    study = load_existing_study(study_name, storage_url)
    if not study.get_trials(deepcopy=False, states=(COMPLETE,)):
        raise UsageError(f"study {study_name!r} has no finished trial yet: nothing to report")
    return study


def top_trials(study: optuna.Study, n: int = TOP_N) -> pd.DataFrame:
    """The ``n`` best complete trials: score, counting setting, training facts and parameters."""
    trials = sorted(study.get_trials(deepcopy=False, states=(COMPLETE,)), key=lambda t: t.value)[:n]
    rows = [
        {
            "trial": t.number,
            "val count-MAE": t.value,
            "baseline": "yes" if is_baseline(t) else "",
            # None: too few validation images gave no standard error.
            "standard error": "no interval" if t.user_attrs.get("value_se") is None else t.user_attrs["value_se"],
            "counting": t.user_attrs.get("counting_name", ""),
            "train s": t.user_attrs.get("train_seconds"),
            **t.params,
        }
        for t in trials
    ]
    return pd.DataFrame(rows)


def summary_rows(study: optuna.Study, storage_url: str) -> list[tuple[str, str]]:
    """Label-value pairs describing the study and its best and baseline trials."""
    states = pd.Series([t.state.name.lower() for t in study.get_trials(deepcopy=False)]).value_counts()
    best = study.best_trial
    meta = study.user_attrs
    return [
        ("study", study.study_name),
        ("storage", safe_url(storage_url)),
        ("trials", ", ".join(f"{n} {state}" for state, n in states.items())),
        (
            "best trial",
            f"{best.number}: val count-MAE {mae_text(best.value, best.user_attrs.get('value_se'))} "
            f"with {best.user_attrs.get('counting_name', '?')}",
        ),
        (
            "data",
            f"{meta.get('train_path')} (seed {meta.get('seed')}, validation fraction {meta.get('val_fraction')}, "
            f"split {meta.get('split_rule', 'per tile')})",
        ),
        ("profile", f"{meta.get('profile')}, counting objective {meta.get('counting_objective')}"),
        ("reference", baseline_line(study)),
        ("search: gain over the baseline", gain_line(study)),
    ]


def finalists_html(study: optuna.Study) -> str:
    """The finalist table and the out-of-fold verdict, as the summary prints them; empty before the stage."""
    staged = finalists.results(study)
    if not staged:
        return ""
    texts = finalist_text(staged)
    rows = [{k: table_cell(v) for k, v in row.items()} for row in finalist_rows(staged, study)]
    table = pd.DataFrame(rows).to_html(index=False, classes="finalists")
    intro, *after = [f"<p>{html.escape(t)}</p>" for t in texts if t]
    return "\n".join(["<h2>Finalists</h2>", intro, table, *after]) + "\n"


def figure_html(figure: ReportFigure) -> str:
    """A figure section: the PNG embedded as base64 (the HTML stands alone), or why it is missing."""
    head = f"<h2>{html.escape(figure.title)}</h2>\n<p>{html.escape(figure.caption)}</p>\n"
    if figure.path is None:
        return head + f'<p class="skipped">Not drawn: {html.escape(figure.skipped or "")}.</p>\n'
    data = base64.b64encode(figure.path.read_bytes()).decode("ascii")
    return head + (
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(figure.title)}" data-file="{figure.path.name}">\n'
    )


def render_html(study: optuna.Study, storage_url: str, figures: list[ReportFigure], table: pd.DataFrame) -> str:
    """The whole report page."""
    summary = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in summary_rows(study, storage_url)
    )
    title = f"Study {study.study_name}: validation count-MAE"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
            "img{max-width:100%}.skipped{color:#a60}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            f"<table>{summary}</table>",
            finalists_html(study),
            *[figure_html(f) for f in figures],
            f"<h2>Top {len(table)} trials</h2>",
            table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", classes="top-trials"),
            "</body></html>",
        ]
    )


def write_report(study: optuna.Study, storage_url: str, out: Path) -> Path:
    """Write the PNGs and ``report.html`` into ``out``; returns the HTML's path."""
    out.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(study, out)
    page = out / "report.html"
    page.write_text(render_html(study, storage_url, figures, top_trials(study)), encoding="utf-8")
    for f in figures:
        if f.skipped:
            print(f"{f.name} skipped: {f.skipped}")
    return page


def report(args) -> Path:
    """Write the report of ``args.study_name``; returns the page's path."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_study_name(args.study_name)  # it names files: studies/<name>.db, reports/<name>
    out = cli.check_output_dir(args.out or Path("reports") / args.study_name, "--out")
    storage_url = given_storage(args.storage) or find_storage(args.study_name)
    study = load_finished_study(args.study_name, storage_url)
    cli.check_spares_study({"--out": out}, storage_url, study)
    page = write_report(study, storage_url, out)
    print(f"wrote {page}")
    return page


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run_command(lambda: report(args))


if __name__ == "__main__":
    sys.exit(main())
