"""Trial roles: the reference configuration, the warm start, finalist runs, and studies written before."""

import optuna
import pytest

from search import roles
from search.results.verdict import Finalist, stage_verdict


def frozen(number: int, **attrs) -> optuna.trial.FrozenTrial:
    """A complete trial numbered ``number`` with user attributes ``attrs``."""
    return optuna.trial.FrozenTrial(
        number=number,
        state=optuna.trial.TrialState.COMPLETE,
        value=1.0,
        datetime_start=None,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs=attrs,
        system_attrs={},
        intermediate_values={},
        trial_id=number,
    )


def test_labels_tell_search_trials_from_finalist_runs():
    assert roles.trial_label(frozen(3)) == "trial 3"
    run = frozen(5, **{roles.SOURCE_ATTR: 3, roles.FOLD_ATTR: 1, roles.FOLDS_ATTR: 2, roles.SEED_ATTR: 2})
    assert roles.trial_label(run) == "run 5 (trial 3 fold 1)" and roles.run_key(run) == (3, 1, 2)
    # A run from before partitions were recorded: of no known partition, so it matches no plan.
    assert roles.run_key(frozen(6, **{roles.SOURCE_ATTR: 3, roles.FOLD_ATTR: 1})) == (3, 1, None)
    assert roles.run_key(frozen(3)) is None


def test_the_reference_and_the_warm_start_are_the_required_trials():
    reference, warm, other = frozen(0, baseline=True), frozen(1, warm_start=True), frozen(2)
    assert [roles.is_baseline(t) for t in (reference, warm, other)] == [True, False, False]
    assert [roles.is_required(t) for t in (reference, warm, other)] == [True, True, False]
    study = optuna.create_study()
    for t in (other, reference):
        study.add_trial(optuna.trial.create_trial(value=t.value, user_attrs=t.user_attrs))
    assert roles.baseline_trial(study).number == 1


@pytest.mark.parametrize("role", ["reference", "best and reference", "seed baseline", "best and seed baseline"])
def test_studies_written_before_the_rename_still_name_their_reference(role):
    assert roles.is_reference_role(role) and not roles.is_reference_role("runner-up")
    runs = {0: frozen(7, val_errors=[1.0] * 5, val_groups=list(range(5)))}
    runs |= {1: frozen(8, val_errors=[1.0] * 5, val_groups=list(range(5, 10)))}
    better = {k: frozen(9 + k, val_errors=[0.0] * 5, val_groups=r.user_attrs["val_groups"]) for k, r in runs.items()}
    reference = Finalist(0, role, {}, 2, runs)
    verdict = stage_verdict([Finalist(3, "best", {}, 2, better), reference])
    assert verdict.baseline is reference and verdict.comparison.diff == pytest.approx(-1.0)


@pytest.mark.parametrize("attr", [roles.REFERENCE_COUNTING_ATTR, roles.OLD_REFERENCE_COUNTING_ATTR])
def test_the_reference_counting_mae_is_read_under_either_name(attr):
    assert roles.reference_counting_mae(frozen(0, **{attr: 2.5})) == 2.5
    assert roles.reference_counting_mae(frozen(0)) is None
