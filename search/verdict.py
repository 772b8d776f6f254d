"""What a study has found: its seed baseline, whether the best trial beats it, and its finalists' verdict.

Two views, one per stage. The search's own (:func:`gain_line`): the best trial against the seed
baseline on the validation images, one training run each, the best picked on those very errors.
The finalists' (:func:`seed_verdict_line`): seed ensembles of fresh runs, compared over
validation images and training seeds; the one the export follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import optuna

from search import stats

if TYPE_CHECKING:
    from search.finalists import Finalist

COMPLETE = optuna.trial.TrialState.COMPLETE


def baseline_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The complete seed-baseline trial, or None."""
    done = study.get_trials(deepcopy=False, states=(COMPLETE,))
    return next((t for t in done if t.user_attrs.get("baseline")), None)


def baseline_line(study: optuna.Study) -> str:
    """One line on the seed-baseline trial: its score, its state, or that it has not run."""
    baseline = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("baseline")]
    if not baseline or not baseline[-1].state.is_finished():
        return "not finished yet"
    t = baseline[-1]
    if t.state == COMPLETE:
        return f"trial {t.number}: val count-MAE {t.value:.3f} with {t.user_attrs.get('counting_name', '?')}"
    return f"trial {t.number}: {t.state.name.lower()}"


def gain(study: optuna.Study) -> dict | None:
    """The best trial against the seed baseline on the same validation tiles, or None.

    Returns :func:`search.stats.compare`'s dict (best minus baseline, so a gain is negative)
    with the two trial numbers added; None while the baseline has not finished or a trial
    lacks its per-tile errors.
    """
    base = baseline_trial(study)
    if base is None:
        return None
    best, groups = study.best_trial, study.user_attrs.get("val_groups")  # a complete baseline: a best exists
    if groups is None or "val_errors" not in base.user_attrs or "val_errors" not in best.user_attrs:
        return None
    result = stats.compare(
        np.array(best.user_attrs["val_errors"]), np.array(base.user_attrs["val_errors"]), np.array(groups)
    )
    return {**result, "best": best.number, "baseline": base.number}


def gain_line(study: optuna.Study) -> str:
    """One plain sentence: does the best trial beat the seed baseline beyond the noise?"""
    g = gain(study)
    if g is None:
        return "no comparison with the seed baseline yet (it has not finished)"
    if g["best"] == g["baseline"]:
        return (
            f"the seed baseline (trial {g['baseline']}) is the best trial: the search found nothing better; "
            "keep the seed's configuration"
        )
    if "too_few" in g:
        return (
            f"best trial {g['best']} against the seed baseline (trial {g['baseline']}): {g['diff']:+.3f} MAE; "
            f"no interval, too few to estimate one: {g['too_few']}"
        )
    head = (
        f"best trial {g['best']} against the seed baseline (trial {g['baseline']}): {g['diff']:+.3f} MAE, "
        f"standard error {g['se']:.3f} (95% interval {g['low']:+.3f} to {g['high']:+.3f}, over validation images)"
    )
    if is_gain(g):
        return head + ": a significant gain"
    return head + ": NOT a significant gain; the seed baseline is the safe choice"


def seed_verdict(finalists: list[Finalist], groups) -> dict | None:
    """The finalist whose seed ensemble scores best on validation, against the seed baseline's ensemble.

    Returns
    -------
    dict or None
        None before any finalist run completed. Otherwise ``winner`` and ``baseline`` (the
        seed baseline's :class:`~search.finalists.Finalist`, or None) and, when both have runs
        and differ, :func:`search.stats.compare_ensembles`' dict (winner minus baseline).
    """
    ready = [f for f in finalists if f.runs]
    if not ready:
        return None
    winner = min(ready, key=lambda f: stats.ensemble_mae(f.errors))  # ties: the earlier in the plan
    baseline = next((f for f in finalists if "seed baseline" in f.role), None)
    verdict = {"winner": winner, "baseline": baseline}
    if baseline is not None and baseline.runs and baseline is not winner:
        labels = (f"trial {winner.trial}", f"trial {baseline.trial}")
        verdict.update(stats.compare_ensembles(winner.errors, baseline.errors, np.asarray(groups), labels))
    return verdict


def seed_verdict_line(finalists: list[Finalist], groups) -> str:
    """One plain sentence: does the best finalist's ensemble beat the seed baseline's beyond seeds and images?"""
    v = seed_verdict(finalists, groups)
    if v is None:
        return "no finalist run has finished yet"
    winner, baseline = v["winner"], v["baseline"]
    lead = f"trial {winner.trial}'s ensemble of {len(winner.runs)} has the lowest validation MAE of the finalists"
    if baseline is None:
        return lead + " (no seed-baseline finalist to compare it with)"
    if baseline is winner:
        return (
            f"the seed baseline's ensemble (trial {baseline.trial}) has the lowest validation MAE of the finalists: "
            "keep the seed's configuration"
        )
    if not baseline.runs:
        return lead + "; the seed baseline's runs have not finished, so there is no comparison yet"
    head = f"trial {winner.trial}'s ensemble against the seed baseline's (trial {baseline.trial}): {v['diff']:+.3f} MAE"
    if "too_few" in v:
        return f"{head}; no interval, too few to estimate one: {v['too_few']}"
    head += (
        f", standard error {v['se']:.3f} ({v['se_images']:.3f} over validation images, {v['se_seeds']:.3f} over "
        f"training seeds; 95% interval {v['low']:+.3f} to {v['high']:+.3f})"
    )
    if is_gain(v):
        return head + ": a significant gain"
    return head + ": NOT a significant gain; the seed baseline's ensemble is the safe choice"


def finalist_rows(finalists: list[Finalist]) -> list[dict]:
    """One row per finalist: each seed's validation MAE, their mean and sd, the ensemble's MAE.

    A seed whose run has not finished is None; one that diverged is ``"diverged"``.
    """
    seeds = sorted({s for f in finalists for s in f.seeds})
    rows = []
    for f in finalists:
        maes = [r.value for r in f.runs]
        by_seed = dict(zip(f.run_seeds, maes))
        rows.append(
            {
                "finalist": f"trial {f.trial}",
                "role": f.role,
                **{f"seed {s}": by_seed.get(s, "diverged" if s in f.diverged else None) for s in seeds},
                "mean": float(np.mean(maes)) if maes else None,
                "sd": float(np.std(maes, ddof=1)) if len(maes) > 1 else None,
                "ensemble": stats.ensemble_mae(f.errors) if maes else None,
            }
        )
    return rows


def markdown_table(rows: list[dict]) -> list[str]:
    """A Markdown table of ``rows`` (the same keys each): numbers to 3 decimals, None as a dash."""
    if not rows:
        return []
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    return lines + ["| " + " | ".join(table_cell(r[k]) for k in keys) + " |" for r in rows]


def table_cell(value) -> str:
    """A table cell: numbers to 3 decimals, None as a dash."""
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def finalist_text(finalists: list[Finalist], groups) -> tuple[str, str, str | None]:
    """The sentences around the finalist table: what it shows, the verdict over seeds, what is left to run."""
    planned = sum(len(f.seeds) for f in finalists)
    settled = sum(len(f.runs) + len(f.diverged) for f in finalists)
    intro = (
        "Finalists trained again with fresh seeds: validation count-MAE of each run, their mean and sd, "
        f"and the MAE of their ensemble (rounded mean count); {settled} of {planned} runs done."
    )
    left = "The finalist stage is not finished: run the same command to finish it." if settled < planned else None
    return intro, f"Verdict over seeds: {seed_verdict_line(finalists, groups)}.", left


def finalist_lines(finalists: list[Finalist], groups) -> list[str]:
    """The finalist table and the verdict over seeds, as Markdown lines (the summary and the note)."""
    intro, verdict, left = finalist_text(finalists, groups)
    return [intro, "", *markdown_table(finalist_rows(finalists)), "", verdict, *([left] if left else [])]


def safe_choice(study: optuna.Study, verdict: dict | None) -> tuple[str, str] | None:
    """What to export instead of the default while its lead over the seed baseline is not established.

    Returns ``(what, export option)``, or None when the default is the baseline or beats it
    significantly. With finalist runs the verdict over seeds (:func:`seed_verdict`, given)
    decides, else the search's own.
    """
    if verdict is not None:
        winner, base = verdict["winner"], verdict["baseline"]
        if base is None or not base.runs or base is winner or is_gain(verdict):
            return None
        return "the seed baseline's ensemble", f"--finalist {base.trial}"
    g = gain(study)
    if g is None or g["best"] == g["baseline"] or is_gain(g):
        return None
    return "the seed baseline", f"--trial {g['baseline']}"


def is_gain(comparison: dict) -> bool:
    """Whether a comparison (new minus baseline, as :mod:`search.stats` returns) is a significant gain."""
    return comparison["significant"] and comparison["diff"] < 0
