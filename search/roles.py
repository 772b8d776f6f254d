"""The user-attribute names that give trials and studies their roles, and the trials holding them.

A leaf module: every stage reads these names and it imports nothing of the project, so the
project's imports run one way (commands, then stages, then results and runtime, then this).
"""

from __future__ import annotations

import optuna

# Search-trial attrs: the reference configuration, and the harness's warm start.
BASELINE_ATTR, WARM_START_ATTR = "baseline", "warm_start"
REQUIRED = (BASELINE_ATTR, WARM_START_ATTR)  # the least search a verdict needs
# Finalist-run attrs: the search trial it retrains, the fold it holds out, the number of folds of its
# partition (runs of another --folds held out other images: never compared), its training seed.
SOURCE_ATTR, FOLD_ATTR, FOLDS_ATTR, SEED_ATTR = "finalist_of", "fold", "n_folds", "train_seed"
RUN_ATTRS = (SOURCE_ATTR, FOLD_ATTR, FOLDS_ATTR, SEED_ATTR)  # what makes a finalist-study trial a run
FOLDER_ATTR = "folder"  # study attr: its folder under studies/ (a finalist study's: "<search's>/finalists")
REFERENCE_ROLE = "reference"  # finalist role of the reference configuration (the notebook's)
REFERENCE_COUNTING_ATTR = "val_mae_reference_counting"  # a trial's MAE under the reference counting
# The same roles in studies written before the notebook's configuration was called the reference.
OLD_REFERENCE_ROLE, OLD_REFERENCE_COUNTING_ATTR = "seed baseline", "val_mae_seed_counting"
EARLIER = "earlier finalist"  # role of a configuration whose runs a later finalist plan no longer holds

COMPLETE = optuna.trial.TrialState.COMPLETE


def is_baseline(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` runs the reference configuration."""
    return bool(trial.user_attrs.get(BASELINE_ATTR))


def is_required(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether ``trial`` is the reference or the warm start: the least search a verdict needs."""
    return any(trial.user_attrs.get(a) for a in REQUIRED)


def baseline_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The complete reference trial, or None."""
    done = study.get_trials(deepcopy=False, states=(COMPLETE,))
    return next((t for t in done if is_baseline(t)), None)


def is_reference_role(role: str) -> bool:
    """Whether a finalist's role (``"reference"``, ``"best and reference"``, ...) names the reference."""
    return REFERENCE_ROLE in role or OLD_REFERENCE_ROLE in role


def reference_counting_mae(trial: optuna.trial.FrozenTrial) -> float | None:
    """The trial's validation MAE under the reference counting (None for a density map)."""
    attrs = trial.user_attrs
    return attrs.get(REFERENCE_COUNTING_ATTR, attrs.get(OLD_REFERENCE_COUNTING_ATTR))


def run_key(trial: optuna.trial.FrozenTrial) -> tuple[int, int, int | None] | None:
    """``(trial, fold, folds)`` a finalist-study trial runs, or None for a trial that is no fold run.

    ``folds`` names the partition the fold belongs to; None for a run from before it was
    recorded, whose partition is unknown, so it matches no plan.
    """
    attrs = trial.user_attrs
    return (attrs[SOURCE_ATTR], attrs[FOLD_ATTR], attrs.get(FOLDS_ATTR)) if FOLD_ATTR in attrs else None


def trial_label(trial: optuna.trial.FrozenTrial) -> str:
    """``trial 3`` for a search trial, ``run 5 (trial 3 fold 1)`` for a finalist run."""
    key = run_key(trial)
    return f"trial {trial.number}" if key is None else f"run {trial.number} (trial {key[0]} fold {key[1]})"
