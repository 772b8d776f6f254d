"""search.stages.prepare: the sampler's seed, distinct when shared, reproducible alone, valid however many trials."""

import optuna

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
