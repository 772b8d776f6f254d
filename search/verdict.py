"""What a study has found: its seed baseline, and whether the best trial beats it for real."""

from __future__ import annotations

import numpy as np
import optuna

from search import stats

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
    head = (
        f"best trial {g['best']} against the seed baseline (trial {g['baseline']}): {g['diff']:+.3f} MAE, "
        f"standard error {g['se']:.3f} (95% interval {g['low']:+.3f} to {g['high']:+.3f}, over validation images)"
    )
    if g["significant"] and g["diff"] < 0:
        return head + ": a significant gain"
    return head + ": NOT a significant gain; the seed baseline is the safe choice"
