"""What a study has found: its reference, whether the best trial beats it, and its finalists' verdict.

Two views, one per stage. The search's own (:func:`gain_line`): the best trial against the
reference on the validation images, one training run each, the best picked on those very errors.
The finalists' (:func:`stage_verdict_line`): fresh runs cross-fitted over the search's training
images, compared out of fold over those images and between runs; the one the export follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import optuna

from search.results import stats
from search.roles import COMPLETE, EARLIER, baseline_trial, is_baseline, is_reference_role


@dataclass
class Finalist:
    """A finalist configuration and its complete runs, one per fold."""

    trial: int  # the search trial whose configuration it is
    role: str
    params: dict
    folds: int  # the folds planned
    runs: dict[int, optuna.trial.FrozenTrial] = field(default_factory=dict)  # complete runs by fold
    diverged: list[int] = field(default_factory=list)  # folds whose run diverged

    def out_of_fold(self, folds: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-tile errors, source images and folds of the runs of ``folds``, fold by fold.

        Every finalist's run of a fold is scored on the same tiles in the same order, so the
        arrays of two finalists over the same folds are paired tile by tile.
        """
        runs = [self.runs[k] for k in folds]
        errors = np.concatenate([r.user_attrs["val_errors"] for r in runs]).astype(float)
        groups = np.concatenate([r.user_attrs["val_groups"] for r in runs]).astype(np.int64)
        fold_of = np.concatenate([[k] * len(r.user_attrs["val_errors"]) for k, r in zip(folds, runs)])
        return errors, groups, fold_of.astype(np.int64)

    def oof_mae(self, folds: list[int]) -> float:
        """Out-of-fold count-MAE over the tiles of ``folds``."""
        return float(np.abs(self.out_of_fold(folds)[0]).mean())


def mae_text(value: float, se: float | None) -> str:
    """A MAE and its stored standard error (``value_se``) for printing: ``2.465 +- 0.354``.

    Too few validation images give no standard error (None): ``2.465 (no interval)``.
    """
    return f"{value:.3f} " + ("(no interval)" if se is None else f"+- {se:.3f}")


def baseline_line(study: optuna.Study) -> str:
    """One line on the reference trial: its score, its state, or that it has not run."""
    baseline = [t for t in study.get_trials(deepcopy=False) if is_baseline(t)]
    if not baseline or not baseline[-1].state.is_finished():
        return "not finished yet"
    t = baseline[-1]
    if t.state == COMPLETE:
        return f"trial {t.number}: val count-MAE {t.value:.3f} with {t.user_attrs.get('counting_name', '?')}"
    return f"trial {t.number}: {t.state.name.lower()}"


@dataclass(frozen=True)
class Gain:
    """The best search trial against the reference on the same validation tiles.

    ``comparison`` is best minus baseline, so a gain is negative.
    """

    best: int
    baseline: int
    comparison: stats.Comparison


def gain(study: optuna.Study) -> Gain | None:
    """The best trial against the reference, or None.

    None while the baseline has not finished or a trial lacks its per-tile errors.
    """
    base = baseline_trial(study)
    if base is None:
        return None
    best, groups = study.best_trial, study.user_attrs.get("val_groups")  # a complete baseline: a best exists
    if groups is None or "val_errors" not in base.user_attrs or "val_errors" not in best.user_attrs:
        return None
    comparison = stats.compare(
        np.array(best.user_attrs["val_errors"]), np.array(base.user_attrs["val_errors"]), np.array(groups)
    )
    return Gain(best.number, base.number, comparison)


def gain_line(study: optuna.Study) -> str:
    """One plain sentence: does the best trial beat the reference beyond the noise?"""
    g = gain(study)
    if g is None:
        return "no comparison with the reference yet (it has not finished)"
    if g.best == g.baseline:
        return (
            f"the reference (trial {g.baseline}) is the best trial: the search found nothing better; "
            "keep the reference configuration"
        )
    c = g.comparison
    if c.too_few:
        return (
            f"best trial {g.best} against the reference (trial {g.baseline}): {c.diff:+.3f} MAE; "
            f"no interval, too few to estimate one: {c.too_few}"
        )
    head = (
        f"best trial {g.best} against the reference (trial {g.baseline}): {c.diff:+.3f} MAE, "
        f"standard error {c.se:.3f} (95% interval {c.low:+.3f} to {c.high:+.3f}, over validation images)"
    )
    if c.is_gain:
        return head + ": a significant gain"
    return head + ": NOT a significant gain; the reference is the safe choice"


def common_folds(finalists: list[Finalist]) -> list[int]:
    """The folds every finalist has a complete run of: the images they can be compared on.

    A finalist whose every run diverged is left out (it will never have one); one whose runs
    are still to do is not, so a stage cut short before a finalist's first run compares nothing.
    """
    ready = [f for f in finalists if f.runs or len(f.diverged) < f.folds]
    if not ready:
        return []
    return sorted(set.intersection(*(set(f.runs) for f in ready)))


@dataclass(frozen=True)
class StageVerdict:
    """The finalist with the lowest out-of-fold MAE, and how it compares with the reference's.

    ``folds`` are the folds every planned finalist with a run has finished: the images compared.
    ``comparison`` is winner minus baseline (:func:`search.results.stats.compare_folds`), or None when
    there is no other reference finalist to compare with.
    """

    winner: Finalist
    baseline: Finalist | None
    folds: list[int]
    n_images: int
    comparison: stats.Comparison | None


def stage_verdict(finalists: list[Finalist]) -> StageVerdict | None:
    """Which finalist wins out of fold, and whether it beats the reference's configuration.

    Returns None until the planned finalists have a fold in common. An earlier finalist (one a
    later plan dropped) competes when its runs cover those folds. A tie keeps the reference.
    """
    folds = common_folds([f for f in finalists if f.role != EARLIER])
    if not folds:
        return None
    ready = [f for f in finalists if set(folds) <= set(f.runs)]
    # Ties: the reference (the search must beat it to be chosen), else the earlier in the plan.
    winner = min(ready, key=lambda f: (f.oof_mae(folds), not is_reference_role(f.role)))
    baseline = next((f for f in ready if is_reference_role(f.role)), None)
    errors, groups, fold_of = winner.out_of_fold(folds)
    comparison = None
    if baseline is not None and baseline is not winner:
        base_errors, base_groups, _ = baseline.out_of_fold(folds)
        if not np.array_equal(groups, base_groups):  # same folds, same tiles: anything else is a bug
            raise ValueError(f"trials {winner.trial} and {baseline.trial} were scored on different tiles")
        comparison = stats.compare_folds(errors, base_errors, groups, fold_of)
    return StageVerdict(winner, baseline, folds, len(np.unique(groups)), comparison)


def stage_verdict_line(finalists: list[Finalist]) -> str:
    """One plain sentence: which finalist wins out of fold, and does it beat the reference configuration?"""
    v = stage_verdict(finalists)
    if v is None:
        return "no fold has a finished run of every finalist yet"
    winner, baseline, c = v.winner, v.baseline, v.comparison
    where = f"over {v.n_images} training-side images, {len(v.folds)} of {winner.folds} folds"
    lead = (
        f"trial {winner.trial} has the lowest out-of-fold MAE of the finalists ({winner.oof_mae(v.folds):.3f} {where})"
    )
    if baseline is None:
        # A reference finalist not compared is one whose every run diverged (common_folds).
        gone = next((f for f in finalists if is_reference_role(f.role)), None)
        if gone is not None:
            return lead + f"; the reference configuration (trial {gone.trial}) diverged in every run"
        return lead + "; no reference finalist to compare it with"
    if baseline is winner:
        mae = winner.oof_mae(v.folds)
        ready = [f for f in finalists if f is not winner and set(v.folds) <= set(f.runs)]
        tied = [f"trial {f.trial}" for f in ready if f.oof_mae(v.folds) == mae]
        has = f"ties {' and '.join(tied)} for" if tied else "has"
        return (
            f"the reference (trial {baseline.trial}) {has} the lowest out-of-fold MAE ({mae:.3f} {where}): "
            "keep the reference configuration"
        )
    head = f"{lead}; the search beat the reference configuration (trial {baseline.trial}) by {-c.diff:+.3f} MAE"
    if c.too_few:
        safe = "the reference configuration is the safe choice"
        return f"{head}; no interval, too few to estimate one: {c.too_few}; {safe}"
    head += (
        f", standard error {c.se:.3f} ({c.se_images:.3f} over images, {c.se_runs:.3f} between runs; "
        f"95% interval of the gain {-c.high:+.3f} to {-c.low:+.3f})"
    )
    if c.is_gain:
        return head + ": a significant gain"
    return head + ": NOT a significant gain; the reference configuration is the safe choice"


def finalist_rows(finalists: list[Finalist], search: optuna.Study | None = None) -> list[dict]:
    """One row per finalist: its search trial's validation MAE, each fold run's MAE, the out-of-fold MAE.

    A fold whose run has not finished is None; one that diverged is ``"diverged"``. The
    out-of-fold MAE is over the folds every planned finalist has finished (None if it lacks one).
    """
    folds = common_folds([f for f in finalists if f.role != EARLIER])
    n_folds = max((f.folds for f in finalists), default=0)
    values = (
        {} if search is None else {t.number: t.value for t in search.get_trials(deepcopy=False, states=(COMPLETE,))}
    )
    rows = []
    for f in finalists:
        by_fold = {k: r.value for k, r in f.runs.items()}
        rows.append(
            {
                "finalist": f"trial {f.trial}",
                "role": f.role,
                "search val": values.get(f.trial),
                **{f"fold {k}": by_fold.get(k, "diverged" if k in f.diverged else None) for k in range(n_folds)},
                "out-of-fold": f.oof_mae(folds) if folds and set(folds) <= set(f.runs) else None,
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


def finalist_text(finalists: list[Finalist]) -> tuple[str, str, str | None]:
    """The sentences around the finalist table: what it shows, the verdict, what is left to run."""
    planned = [f for f in finalists if f.role != EARLIER]
    total = sum(f.folds for f in planned)
    settled = sum(len(f.runs) + len(f.diverged) for f in planned)
    intro = (
        "Finalists judged out of fold: each trained once per fold of the search's training images (the other "
        "folds and the validation images) with a fresh seed, and scored on the fold it held out; "
        f"{settled} of {total} runs done."
    )
    earlier = [f"trial {f.trial}" for f in finalists if f.role == EARLIER]
    if earlier:
        # Why the plan changed (a new best, or a smaller --finalists) is not recorded: only that it did.
        intro += (
            f" Runs of {', '.join(earlier)} finished under an earlier plan, which held "
            f"{'it' if len(earlier) == 1 else 'them'}; this plan's {len(planned)} finalists do not."
        )
    left = "The finalist stage is not finished: run the same command to finish it." if settled < total else None
    return intro, f"Verdict out of fold: {stage_verdict_line(finalists)}.", left


def finalist_lines(finalists: list[Finalist], search: optuna.Study | None = None) -> list[str]:
    """The finalist table and the verdict, as Markdown lines (the summary and the note)."""
    intro, verdict, left = finalist_text(finalists)
    return [intro, "", *markdown_table(finalist_rows(finalists, search)), "", verdict, *([left] if left else [])]


def safe_choice(study: optuna.Study, verdict: StageVerdict | None) -> tuple[str, str] | None:
    """What to export instead of the default while its lead over the reference is not established.

    Returns ``(what, export option)``, or None when the default is the baseline or beats it
    significantly. With a finalist verdict it decides, else the search's own comparison.
    """
    if verdict is not None:
        base = verdict.baseline
        if base is None or base is verdict.winner or verdict.comparison.is_gain:
            return None
        return "the reference's models", f"--finalist {base.trial}"
    g = gain(study)
    if g is None or g.best == g.baseline or g.comparison.is_gain:
        return None
    return "the reference", f"--trial {g.baseline}"
