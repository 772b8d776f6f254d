"""search.stages.prepare: the sampler's seed, distinct when shared, reproducible alone, valid however many trials."""

import optuna
import pytest
import torch
from helpers import tiny_args

from search import study_options
from search.runtime.storage import open_storage
from search.stages import prepare

FLOAT = optuna.distributions.FloatDistribution(0, 1)


def test_shared_studies_draw_unique_sampler_seeds(in_tmp):
    journal = "studies/s.journal.log"
    shared = optuna.create_study(storage=open_storage(journal))
    # Two machines looking at the same study state at the same instant draw different seeds.
    assert len({prepare.sampler_seed(shared, 0, None, journal) for _ in range(4)}) == 4
    assert len({prepare.sampler_seed(shared, 0, 1, journal) for _ in range(4)}) == 4
    # One process on SQLite (the default) stays reproducible.
    single = optuna.create_study(storage="sqlite:///studies/s.db")
    single.enqueue_trial({})
    assert prepare.sampler_seed(single, 5, None, "sqlite:///studies/s.db") == 6


def test_sampler_seed_stays_valid_however_many_trials():
    single = optuna.create_study()
    single.enqueue_trial({})
    # The largest --seed, and a sum right at the wrap (as after 2**31 trials).
    seeds = [prepare.sampler_seed(single, seed, None, "sqlite:///s.db") for seed in (prepare.MAX_SEED, 2**32 - 1)]
    assert seeds == [2**31, 0]
    for seed in seeds:
        prepare.make_sampler("random", seed).sample_independent(single, single.ask(), "x", FLOAT)


def prepared(train, monkeypatch, capsys, meanwhile=None):
    """Prepare the study 'cells' as ``search.study`` would; ``meanwhile`` runs just after it looks for it."""
    args = study_options.parse_args(tiny_args(train))
    storage = open_storage("sqlite:///studies/cells.db")
    if meanwhile is not None:  # another process acts between this one's look for the study and its create
        real = optuna.get_all_study_names

        def look(storage):
            names = real(storage)
            monkeypatch.setattr(optuna, "get_all_study_names", real)
            meanwhile()
            return names

        monkeypatch.setattr(optuna, "get_all_study_names", look)
    s, _ = prepare.prepare_study(args, storage, "masks", torch.device("cpu"))
    return s, capsys.readouterr().out


def queued(s):
    """The waiting trials: baselines and warm starts."""
    return [(t.user_attrs.get("baseline"), t.user_attrs.get("warm_start")) for t in s.trials]


def test_a_study_created_by_another_process_at_the_same_moment_is_joined(
    tiny_files, tiny_profile, in_tmp, monkeypatch, capsys
):
    train, _, _ = tiny_files
    # The other process finds no study either, and creates and sets it up first: this one's create fails.
    s, out = prepared(train, monkeypatch, capsys, meanwhile=lambda: prepared(train, monkeypatch, capsys))
    assert "resuming study 'cells'" in out
    assert queued(s) == [(True, None), (None, True)]  # one reference, one warm start: not queued twice


def test_a_study_still_being_set_up_by_another_process_is_waited_for(
    tiny_files, tiny_profile, in_tmp, monkeypatch, capsys
):
    train, _, _ = tiny_files
    first, _ = prepared(train, monkeypatch, capsys)
    first.set_user_attr(prepare.SET_UP_ATTR, False)  # as if created, its first trials not queued yet
    waits = []

    def sleep(seconds):  # the other process finishes setting it up while this one waits
        waits.append(seconds)
        first.set_user_attr(prepare.SET_UP_ATTR, True)

    monkeypatch.setattr(prepare.time, "sleep", sleep)
    s, out = prepared(train, monkeypatch, capsys)
    assert waits and "being set up by the process that created it" in out and "resuming study" in out
    assert queued(s) == [(True, None), (None, True)]


def test_a_study_from_before_the_set_up_mark_resumes_without_waiting(
    tiny_files, tiny_profile, in_tmp, monkeypatch, capsys
):
    train, _, _ = tiny_files
    old, _ = prepared(train, monkeypatch, capsys)
    old.set_user_attr(prepare.SET_UP_ATTR, False)  # as recorded before the mark existed...
    old.tell(old.ask(), 1.0)  # ...by a study that has run its reference
    monkeypatch.setattr(prepare.time, "sleep", lambda seconds: pytest.fail("waited"))
    s, out = prepared(train, monkeypatch, capsys)
    assert "resuming study" in out and "being set up" not in out and s.user_attrs[prepare.SET_UP_ATTR] is True
