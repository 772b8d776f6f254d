"""The search-gain benchmark on tiny studies: it reuses what exists and never crashes on a thin study."""

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from search import objective, study

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_gain.py"


@pytest.fixture
def search_gain(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # as when run as a script: its helpers beside it
    spec = importlib.util.spec_from_file_location("search_gain", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench(search_gain, tiny_files, capsys, *extra):
    _, test, truth = tiny_files
    groups = test.with_name("test_groups.npz")
    np.savez(groups, groups=np.arange(6) // 2)  # 3 test images of 2 tiles
    argv = ["--study-seeds", "0", "--test", str(test), "--truth", str(truth), "--groups", str(groups), *extra]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # one study seed: no mean or sd of nothing
        assert search_gain.main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]


def test_reuses_a_study_kept_in_a_journal_file(search_gain, tiny_files, tiny_profile, in_tmp, capsys, monkeypatch):
    train, _, _ = tiny_files
    stage = ["--finalists", "2", "--finalist-seeds", "2"]
    journal = ["--storage", "studies/gain-s0.journal.log"]
    assert study.main(["--train", str(train), "--profile", "tiny", "--study-name", "gain-s0", *journal, *stage]) == 0
    monkeypatch.setattr(search_gain.subprocess, "run", lambda *a, **k: pytest.fail("started a study"))
    row = bench(search_gain, tiny_files, capsys)
    assert row["runs"] == row["planned_runs"] == 4 and row["wall_s"] is None
    for key in ("default", "best_alone", "baseline_ensemble"):
        assert row[key]["mae"] >= 0 and row[key]["se"] is None  # 3 test images: too few for an SE
    assert "ensemble" in row["default"]["exported"]


def test_a_study_whose_baseline_never_completed(search_gain, tiny_files, tiny_profile, in_tmp, capsys, monkeypatch):
    real_fit = objective.fit

    def baseline_diverges(net, train, *args, **kwargs):
        if train.lr == 2e-4:  # the seed baseline's rate
            raise FloatingPointError("diverged")
        return real_fit(net, train, *args, **kwargs)

    monkeypatch.setattr(objective, "fit", baseline_diverges)
    train, _, _ = tiny_files
    assert study.main(["--train", str(train), "--profile", "tiny", "--study-name", "gain-s0", "--n-trials", "2"]) == 0
    row = bench(search_gain, tiny_files, capsys)
    assert row["baseline_trial"] is None and row["baseline_ensemble"] is None and row["seed_verdict"] is None
    assert row["default"]["exported"] == f"trial {row['best_trial']} alone"
