"""The study's dashboard note: its data, profile, reference, and what the search and its finalists found."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import optuna
from optuna_dashboard import get_note, save_note

from search.results.blend import blend_lines
from search.results.verdict import Finalist, baseline_line, finalist_lines, gain_line
from search.roles import is_baseline

if TYPE_CHECKING:
    from search.space import Profile


class StudyNote:
    """The study's dashboard note: data, split, profile, the reference, the gain over it, the finalists.

    Call :meth:`ensure` when a run starts (it writes the note of a new study); as a study callback
    it rewrites the note when the baseline or a new best trial ends, and the finalist stage
    rewrites it after each run, so edits made in the dashboard last only until then.

    Parameters
    ----------
    n_train, n_val : int
        Tiles in the training and validation parts of the split.
    true_counts : str
        Where the true counts come from.
    split_rule : str
        How tiles were kept together across the split (source images found or stored).
    profile : Profile
        The study's search profile.
    trains_from : str
        What the trials train on: masks, or disks or density maps drawn at dots (``space.annotation_text``).
    finalists_of : callable
        The study's finalists with their runs (``search.stages.finalists.results``).
    """

    def __init__(
        self,
        n_train: int,
        n_val: int,
        true_counts: str,
        split_rule: str,
        profile: Profile,
        trains_from: str,
        finalists_of: Callable[[optuna.Study], list[Finalist]],
    ):
        self.n_train, self.n_val, self.true_counts, self.profile = n_train, n_val, true_counts, profile
        self.split_rule, self.trains_from, self.finalists_of = split_rule, trains_from, finalists_of

    def body(self, study: optuna.Study) -> str:
        """The note's Markdown for ``study`` as it stands."""
        meta, p = study.user_attrs, self.profile
        lines = [
            f"## Study `{study.study_name}`",
            f"Objective: minimise **{meta.get('objective', 'val_count_mae')}** (validation count-MAE), "
            f"counting objective `{meta.get('counting_objective', '?')}`.",
            "",
            "### Data",
            f"- training file: `{meta.get('train_path')}` (sha256 `{str(meta.get('train_fingerprint'))[:12]}…`)",
            f"- {self.n_train + self.n_val} tiles: {self.n_train} training, {self.n_val} validation "
            f"(validation fraction {meta.get('val_fraction')}, seed {meta.get('seed')})",
            f"- split {self.split_rule}",
            f"- true counts: {self.true_counts}",
            f"- trains from {self.trains_from}",
            "",
            "### Profile",
            f"- `{p.name}`: U-Net base width {p.base}, epochs {p.epochs[0]}-{p.epochs[1]}, "
            f"default budget {p.n_trials} trials / {p.timeout:.0f} s",
            "",
            "### Reference configuration",
            f"- {baseline_line(study)}",
            f"- search: {gain_line(study)}",
        ]
        staged = self.finalists_of(study)
        if staged:
            lines += ["", "### Finalists", *finalist_lines(staged, study)]
            lines += [line for text in blend_lines(staged) for line in ("", text)]
        return "\n".join(lines) + "\n"

    def write(self, study: optuna.Study) -> None:
        save_note(study, self.body(study))

    def ensure(self, study: optuna.Study) -> None:
        """Write the note unless the study has one (a resumed study keeps its note until a rewrite)."""
        if not get_note(study):
            self.write(study)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # The baseline's score and the gain over it change only when these trials end.
        new_best = trial.state == optuna.trial.TrialState.COMPLETE and study.best_trial.number == trial.number
        if is_baseline(trial) or new_best:
            self.write(study)
