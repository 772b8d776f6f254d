"""What ``python -m search.study`` prints about its trials: a line per finished trial, the end-of-run summary.

The summary puts the best trial beside the reference, gives the search's and the finalists'
verdicts, and the commands to browse the study and export its models (the safe choice too,
when the gain is not significant).
"""

from __future__ import annotations

import optuna

from search import space
from search.results.blend import blend_lines
from search.results.verdict import finalist_lines, gain_line, mae_text, safe_choice, stage_verdict
from search.roles import baseline_trial, is_baseline, reference_counting_mae, run_key, trial_label
from search.runtime.artifacts import artifact_dir
from search.runtime.storage import dashboard_target, default_url
from search.runtime.workers import FINISHED
from search.stages import finalists


def print_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """One line per finished trial or finalist run."""
    a = trial.user_attrs
    tag = f"{trial_label(trial)}{' (reference)' if is_baseline(trial) else ''}"
    if trial.state == optuna.trial.TrialState.COMPLETE:
        best = f"; best so far: trial {study.best_trial.number} ({study.best_value:.3f})"
        best = "" if run_key(trial) else best  # a finalist run is no search trial
        print(
            f"{tag} finished: val MAE {mae_text(trial.value, a.get('value_se'))} with "
            f"{a['counting_name']} ({a['train_seconds']:.0f} s){best}",
            flush=True,
        )
    elif trial.state == optuna.trial.TrialState.PRUNED:
        steps = trial.intermediate_values
        last = f" at epoch {max(steps)} (val MAE {steps[max(steps)]:.3f})" if steps else ""
        why = a.get("stopped", "pruned")
        print(f"{tag} {why}{last}", flush=True)
    else:
        reason = a.get("fail_reason", "see the log above")
        print(f"{tag} {trial.state.name.lower()}: {reason}", flush=True)


def no_complete_hint(study: optuna.Study, target: int) -> str:
    """What to do about a study with no complete trial; never "run again" when that would do nothing."""
    if len(study.get_trials(deepcopy=False, states=FINISHED)) >= target:
        return f"all {target} finished trials were pruned: raise --n-trials to run more"
    if any(t.user_attrs.get("stopped") for t in study.get_trials(deepcopy=False)):
        return (
            "the timeout stopped a trial before its last epoch and queued it again: run the same command "
            "to continue, with a longer --timeout if one trial needs more time than that"
        )
    return "run the same command again to continue"


def summarize(study: optuna.Study, storage_url: str, target: int) -> None:
    """The best trial beside the baseline, the finalists' verdict over seeds, and how to browse and export."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        print(f"no finished trial yet: {no_complete_hint(study, target)}", flush=True)
        return
    best = study.best_trial
    se = best.user_attrs.get("value_se")
    print(
        f"\nbest trial {best.number}: val MAE {mae_text(best.value, se)}"
        f"{'' if se is None else ' (standard error over validation images)'} with "
        f"{best.user_attrs['counting_name']}; params {best.params}"
    )
    baseline = baseline_trial(study)
    if baseline is not None:
        print(
            f"reference (trial {baseline.number}): val MAE {baseline.value:.3f} as scored by the study, "
            f"{reference_counting_mae(baseline):.3f} with the reference counting "
            f"({space.setting_name(space.REFERENCE_COUNTING)})"
        )
    print(f"search: {gain_line(study)}")
    staged = finalists.results(study)
    if staged:
        print("\n" + "\n".join([*finalist_lines(staged, study), *blend_lines(staged)]) + "\n")
    print(
        f"browse: optuna-dashboard {dashboard_target(storage_url)} "
        f"--artifact-dir {artifact_dir(study)} --host 127.0.0.1"
    )
    export = f"python -m search.export --study-name {study.study_name}" + (
        f" --storage {dashboard_target(storage_url)}" if storage_url != default_url(study.study_name) else ""
    )
    v = stage_verdict(staged)
    what = f"trial {best.number} alone" if v is None else "the finalists' models, weighted out of fold"
    print(f"export: {export}   ({what})", flush=True)
    safe = safe_choice(study, v)
    if safe is not None:
        print(f"export the safe choice, {safe[0]}: {export} {safe[1]}", flush=True)
