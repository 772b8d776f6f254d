"""The benchmarks on tiny data: search-gain reuses what exists and never crashes on a thin study; dots-vs-masks
runs; predict-speed prints what it measured."""

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import disc_set

from search import study
from search.stages import objective

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(monkeypatch, name):
    """The benchmark script ``benchmarks/<name>.py`` as a module."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as when run as a script: its helpers beside it
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def search_gain(monkeypatch):
    return load_script(monkeypatch, "search_gain")


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
    stage = ["--finalists", "2", "--folds", "2"]
    journal = ["--storage", "studies/gain-s0.journal.log"]
    assert study.main(["--train", str(train), "--profile", "tiny", "--study-name", "gain-s0", *journal, *stage]) == 0
    monkeypatch.setattr(search_gain, "run_commands", lambda commands, parallel: pytest.fail("started a study"))
    row = bench(search_gain, tiny_files, capsys)
    assert row["runs"] == row["planned_runs"] == 4 and row["wall_s"] is None
    for key in ("default", "best_alone", "baseline", "warm_start"):
        assert row[key]["mae"] >= 0 and row[key]["se"] is None  # 3 test images: too few for an SE
    assert "fold models" in row["default"]["exported"] and "fold models" in row["baseline"]["exported"]
    assert row["epoch_s"] > 0
    # Before and after a change: each default export paired with an earlier run's of the same seed.
    earlier = in_tmp / "earlier.json"
    earlier.write_text(json.dumps([{**row, "default": {**row["default"], "errors": [0] * 6}}]))
    again = bench(search_gain, tiny_files, capsys, "--against", str(earlier))
    assert again["earlier_default"]["exported"] == row["default"]["exported"]
    assert again["default_minus_earlier"]["diff"] == pytest.approx(row["default"]["mae"])  # against no error


def test_a_study_whose_baseline_never_completed(search_gain, tiny_files, tiny_profile, in_tmp, capsys, monkeypatch):
    real_fit = objective.fit

    def baseline_diverges(net, train, *args, **kwargs):
        if train.lr == 2e-4:  # the reference's rate
            raise FloatingPointError("diverged")
        return real_fit(net, train, *args, **kwargs)

    monkeypatch.setattr(objective, "fit", baseline_diverges)
    train, _, _ = tiny_files
    assert study.main(["--train", str(train), "--profile", "tiny", "--study-name", "gain-s0", "--n-trials", "2"]) == 0
    row = bench(search_gain, tiny_files, capsys)
    assert row["baseline_trial"] is None and row["baseline"] is None and row["stage_verdict"] is None
    assert row["default"]["exported"] == f"trial {row['best_trial']} alone"


def test_dots_vs_masks_on_tiny_files(tiny_profile, in_tmp, capsys, monkeypatch):
    dots_vs_masks = load_script(monkeypatch, "dots_vs_masks")
    arrays, test = disc_set(30, seed=1), disc_set(6, seed=2)
    train = in_tmp / "train.npz"
    np.savez(train, **arrays, groups=np.arange(30) // 3)
    np.savez(in_tmp / "test.npz", X=test["X"])
    np.savez(in_tmp / "truth.npz", groups=np.arange(6))  # 6 test images: enough for a standard error
    (in_tmp / "truth.csv").write_text("index,count\n" + "".join(f"{i},{c}\n" for i, c in enumerate(test["counts"])))
    bench = in_tmp / "BENCH.md"
    write_section = dots_vs_masks.write_section
    monkeypatch.setattr(dots_vs_masks, "write_section", lambda name, text: write_section(name, text, bench))
    files = ["--train", "train.npz", "--test", "test.npz", "--truth", "truth.csv", "--groups", "truth.npz"]
    extra = ["--profile", "tiny", "--seeds", "1", "2", "--radius", "2", "--sigma", "1.5", "--write"]
    assert dots_vs_masks.main([*files, *extra]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["seed"] for r in result["runs"]["masks"]] == [1, 2]
    assert len(result["runs"]["disks"]) == len(result["runs"]["density"]) == 2
    summary = result["summary"]
    for route in ("masks", "disks", "density"):
        means = np.mean([r["test"] for r in result["runs"][route]])
        assert summary[route]["test_mean"] == pytest.approx(means) and summary[route]["test_se_images"] > 0
    for route in ("disks", "density"):
        difference = summary["difference"][route]
        assert difference["diff"] == pytest.approx(summary[route]["test_mean"] - summary["masks"]["test_mean"])
        assert difference["se"] >= 0  # computed: 6 test images are enough (tiny nets may count alike)
    # Every density run counted by its sum, every other by thresholds.
    assert all(r["counting"].startswith("density") for r in result["runs"]["density"])
    assert not any(r["counting"].startswith("density") for r in result["runs"]["masks"] + result["runs"]["disks"])
    section = bench.read_text()
    assert "<!-- dots:start -->" in section and "| disks (radius 2 px) |" in section
    assert "| density (sigma 1.5 px) |" in section
    assert "python benchmarks/dots_vs_masks.py --train train.npz" in section and "--write" in section
    assert f"(density minus masks): **{difference['diff']:+.3f}** MAE" in section


def test_speed_benchmark_prints_what_it_measured(capsys):
    path = BENCHMARKS / "predict_speed.py"
    spec = importlib.util.spec_from_file_location("predict_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--sizes", "40", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["device"] == "cpu" and result["tile"] == 128 and result["threads"] >= 1
    assert [r["side"] for r in result["rows"]] == [40] and result["rows"][0]["megapixels_per_s"] > 0
