"""Tests of `python -m search.export`: submission format, truth, refit/TTA, errors, a finalist stage's models."""

import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from helpers import STAGE, built_study_folder, disc_tiles, header_bomb, load, run_study
from optuna.artifacts import get_all_artifact_meta

from model.checkpoint import load_checkpoint
from model.count import count_setting
from model.infer import predict_prob
from search import export, roles, study
from search.results import blend
from search.runtime.artifacts import artifact_dir
from search.runtime.storage import open_storage
from search.stages import finalists


def artifact_store(root):
    """The artifact folder of the study 'cells' in ``root``/studies/cells.db."""
    s = optuna.load_study(study_name="cells", storage=f"sqlite:///{root}/studies/cells.db")
    return root / artifact_dir(s)


@pytest.fixture(scope="module")
def built_study(tmp_path_factory):
    """One tiny finished study for the whole module (training is what costs): its folder."""
    return built_study_folder(tmp_path_factory, n_trials=2)


@pytest.fixture
def finished_study(built_study, tiny_files, tiny_profile, in_tmp):
    """A copy of the built study in this test's folder, so a test may change it."""
    shutil.copytree(built_study / "studies", in_tmp / "studies")
    _, test, truth = tiny_files
    return test, truth


def test_submission_format_and_truth(finished_study, in_tmp, capsys):
    test, truth = finished_study
    assert export.main(["--test", str(test), "--truth", str(truth)]) == 0
    sub = pd.read_csv(in_tmp / "submission.csv")
    assert list(sub.columns) == ["index", "count"]
    assert sub["index"].tolist() == list(range(6))
    assert sub["count"].dtype.kind == "i"
    log = json.loads((in_tmp / "submission.json").read_text())
    best = optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db").best_trial
    assert log["trial"] == best.number and log["counting"] == best.user_attrs["counting"]
    true = pd.read_csv(truth)["count"].to_numpy()
    assert log["test_mae"] == pytest.approx(np.abs(sub["count"].to_numpy() - true).mean())
    assert f"MAE {log['test_mae']:.3f}" in capsys.readouterr().out


def test_refit_tta_and_chosen_trial(finished_study, in_tmp):
    test, _ = finished_study
    out = in_tmp / "sub" / "refit.csv"
    assert export.main(["--test", str(test), "--trial", "1", "--refit", "--tta", "--out", str(out)]) == 0
    log = json.loads(out.with_suffix(".json").read_text())
    assert log["trial"] == 1 and log["refit"] is True and log["tta"] is True
    assert [m["checkpoint"][-5:] for m in log["members"]] == ["refit"]
    assert len(pd.read_csv(out)) == 6


def test_errors_exit_2(finished_study, in_tmp, capsys):
    test, truth = finished_study
    cases = [
        (["--trial", "99"], "did not finish"),
        (["--study-name", "nope"], "no study database"),
        (["--test", str(in_tmp / "missing.npz")], "file not found"),
        (["--test", str(test), "--truth", str(test)], "test.npz"),
        (["--test", str(header_bomb(in_tmp / "bomb.npz"))], "bomb.npz: array 'X' would take 16384.0 GiB"),
    ]
    for args, message in cases:
        assert export.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (args, err)
    # A checkpoint lost since the study ran, and its artifacts too, is named, not a traceback.
    best = optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db").best_trial
    (in_tmp / best.user_attrs["checkpoint"] / "config.json").unlink()
    shutil.rmtree(artifact_store(in_tmp))
    assert export.main(["--test", str(test)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint file missing" in err and "artifact store" in err
    assert not (in_tmp / "submission.csv").exists()


def test_study_without_finished_trial(in_tmp, capsys):
    (in_tmp / "studies").mkdir()
    optuna.create_study(study_name="cells", storage="sqlite:///studies/cells.db")
    assert export.main([]) == 2
    assert "no finished trial" in capsys.readouterr().err


def test_same_name_in_another_storage_keeps_its_own_checkpoints(tiny_files, finished_study, in_tmp, capsys):
    train, test, _ = tiny_files
    assert (
        study.main(
            ["--train", str(train), "--profile", "tiny", "--n-trials", "1", "--storage", "studies/cells.journal.log"]
        )
        == 0
    )
    ours = optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db").trials[0]
    theirs = optuna.load_study(study_name="cells", storage=open_storage("studies/cells.journal.log")).trials[0]
    assert ours.user_attrs["checkpoint"] != theirs.user_attrs["checkpoint"]
    assert export.main(["--test", str(test), "--trial", "0"]) == 0
    # Another study's weights in this trial's folder are refused, not exported.
    shutil.copytree(
        in_tmp / theirs.user_attrs["checkpoint"], in_tmp / ours.user_attrs["checkpoint"], dirs_exist_ok=True
    )
    capsys.readouterr()
    assert export.main(["--test", str(test), "--trial", "0", "--out", "other.csv"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not belong to trial 0 of study 'cells'" in err
    assert not (in_tmp / "other.csv").exists()


def test_checkpoint_of_another_trial_is_refused(finished_study, in_tmp, capsys):
    test, _ = finished_study
    trials = optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db").trials
    # The whole checkpoint, so that its weights match the checksum its config records.
    shutil.copytree(
        in_tmp / trials[1].user_attrs["checkpoint"], in_tmp / trials[0].user_attrs["checkpoint"], dirs_exist_ok=True
    )
    assert export.main(["--test", str(test), "--trial", "0"]) == 2
    assert "it records trial 1" in capsys.readouterr().err


def test_test_tiles_of_another_size_are_refused(finished_study, in_tmp, capsys):
    small = in_tmp / "small.npz"
    np.savez(small, X=disc_tiles(3, size=16)[0])
    assert export.main(["--test", str(small)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "small.npz: tiles are 16x16" in err and "32x32" in err
    assert not (in_tmp / "submission.csv").exists()


@pytest.mark.parametrize(
    "spoil, message",
    [
        (lambda ckpt, other: (ckpt / "model.safetensors").write_bytes(b""), "model.safetensors: not the weights"),
        (lambda ckpt, other: (ckpt / "config.json").write_text("{"), "config.json: not valid JSON"),
        # Same architecture, so the weights would load: only the recorded checksum tells them apart.
        (lambda ckpt, other: shutil.copy(other / "model.safetensors", ckpt), "copied from another checkpoint"),
    ],
)
def test_corrupt_or_swapped_checkpoint_exits_2(finished_study, in_tmp, capsys, spoil, message):
    test, _ = finished_study
    trials = optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db").trials
    spoil(in_tmp / trials[0].user_attrs["checkpoint"], in_tmp / trials[1].user_attrs["checkpoint"])
    assert export.main(["--test", str(test), "--trial", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: trial 0: ") and message in err
    assert not (in_tmp / "submission.csv").exists()


@pytest.mark.parametrize("out, problem", [(".", "is a folder"), ("truth.csv/sub.csv", "truth.csv is a file")])
def test_unwritable_out_exits_2_before_any_work(finished_study, in_tmp, capsys, out, problem):
    test, _ = finished_study  # truth.csv is in in_tmp
    before = sorted(in_tmp.rglob("*"))
    assert export.main(["--test", str(test), "--refit", "--out", out]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and f"--out {out}: " in captured.err and problem in captured.err
    assert "refit" not in captured.out and sorted(in_tmp.rglob("*")) == before  # refused before retraining


def test_out_ending_in_json_would_be_overwritten_by_its_log_and_is_refused(finished_study, in_tmp, capsys):
    test, _ = finished_study
    assert export.main(["--test", str(test), "--out", "sub.json"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sub.json" in err and ".csv" in err
    assert not (in_tmp / "sub.json").exists()


@pytest.mark.parametrize(
    "extra, out, clash",
    [
        (["--truth", "truth.csv"], "truth.csv", "--truth"),  # the next export would score MAE 0.000
        (["--truth", "truth.csv"], "sub/../truth.csv", "--truth"),  # compared resolved
        (["--truth", "t.json"], "t.csv", "--truth"),  # the log beside the CSV
        ([], "test.npz", "--test"),
    ],
)
def test_out_that_is_an_input_is_refused_nothing_written(finished_study, in_tmp, capsys, extra, out, clash):
    test, truth = finished_study  # both in in_tmp
    shutil.copy(truth, in_tmp / "t.json")
    (in_tmp / "sub").mkdir()
    before = {p: p.read_bytes() for p in in_tmp.glob("*.*")}
    assert export.main(["--test", "test.npz", *extra, "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"is the same file as {clash}" in err, err
    assert {p: p.read_bytes() for p in in_tmp.glob("*.*")} == before


def test_config_without_what_the_export_reads_exits_2(finished_study, in_tmp, capsys):
    test, _ = finished_study
    ckpt = (
        optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db").trials[0].user_attrs["checkpoint"]
    )
    config = in_tmp / ckpt / "config.json"
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "tile_size"}))
    assert export.main(["--test", str(test), "--trial", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lacks tile_size" in err


def test_export_from_another_folder_with_an_absolute_url(finished_study, in_tmp, monkeypatch):
    test, _ = finished_study
    elsewhere = in_tmp / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert export.main(["--storage", f"sqlite:///{in_tmp}/studies/cells.db", "--test", str(test)]) == 0
    log = json.loads((elsewhere / "submission.json").read_text())
    assert log["members"][0]["checkpoint"].startswith(str(in_tmp / "studies" / "cells-"))


def test_missing_checkpoint_is_read_from_the_artifact_store(finished_study, in_tmp):
    test, _ = finished_study
    trial = optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db").trials[0]
    shutil.rmtree(in_tmp / trial.user_attrs["checkpoint"])
    assert export.main(["--test", str(test), "--trial", "0", "--out", "a.csv"]) == 0
    log = json.loads((in_tmp / "a.json").read_text())
    assert log["members"][0]["checkpoint"].startswith("artifact model.safetensors")


def test_corrupt_artifact_is_refused_in_one_line(finished_study, in_tmp, capsys):
    test, _ = finished_study
    storage = open_storage("sqlite:///studies/cells.db")
    trial = optuna.load_study(study_name="cells", storage=storage).trials[0]
    shutil.rmtree(in_tmp / trial.user_attrs["checkpoint"])
    (weights,) = [m for m in get_all_artifact_meta(trial, storage=storage) if m.filename == "model.safetensors"]
    (artifact_store(in_tmp) / weights.artifact_id).write_bytes(b"not the weights")
    assert export.main(["--test", str(test), "--trial", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: trial 0: artifact model.safetensors")
    assert "not the weights saved with config.json" in err
    assert not (in_tmp / "submission.csv").exists()


# --- with a finalist stage ------------------------------------------------------------


@pytest.mark.slow
def test_export_writes_the_winners_search_and_fold_models(tiny_files, tiny_profile, in_tmp, capsys):
    train, test, truth = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    search, staged = load(), finalists.results(load())
    winner = min(staged, key=lambda f: f.oof_mae([0, 1]))
    assert export.main(["--test", str(test), "--truth", str(truth), "--finalist", str(winner.trial)]) == 0
    log = json.loads((in_tmp / "submission.json").read_text())
    alone = blend.stage_blend(staged, only=winner.trial)  # weight 1, its own counting chosen out of fold
    assert log["trial"] == winner.trial and log["score"] == "nested out-of-fold MAE"
    assert log["mae"] == pytest.approx(alone.score()[1]) and log["blend"]["weights"] == {f"trial {winner.trial}": 1}
    # The search trial's own model, then one model per fold, each with its own seed and counting.
    assert [m["run"] for m in log["members"]] == [f"trial {winner.trial}"] + [
        roles.trial_label(winner.runs[k]) for k in (0, 1)
    ]
    assert [(m["fold"], m["seed"]) for m in log["members"]] == [(None, 0), (0, 1), (1, 2)]
    images = np.load(test)["X"]
    counts = []
    for member, trial in zip(log["members"], [search.trials[winner.trial], winner.runs[0], winner.runs[1]]):
        assert Path(member["checkpoint"]) == in_tmp / trial.user_attrs["checkpoint"]
        assert member["counting"] == trial.user_attrs["counting"]
        net, config = load_checkpoint(member["checkpoint"])
        counts.append(count_setting(predict_prob(net, images, loss=config["train"]["loss"]), member["counting"]))
    submission = pd.read_csv(in_tmp / "submission.csv")["count"].to_numpy()
    keys = [(winner.trial, None), (winner.trial, 0), (winner.trial, 1)]
    np.testing.assert_array_equal(submission, alone.counts(np.stack(counts), keys))
    assert "exported trial" in capsys.readouterr().out

    # The baseline's models on request, refitted and with TTA per member; one trial alone with --trial.
    assert export.main(["--test", str(test), "--finalist", "0", "--refit", "--tta", "--out", "base.csv"]) == 0
    base = json.loads((in_tmp / "base.json").read_text())
    assert base["trial"] == 0 and base["tta"] and len(base["members"]) == 3
    assert all(m["checkpoint"].endswith("refit") for m in base["members"])
    assert export.main(["--test", str(test), "--trial", "1", "--out", "one.csv"]) == 0
    one = json.loads((in_tmp / "one.json").read_text())
    assert [m["run"] for m in one["members"]] == ["trial 1"]
    assert one["counting"] == load().trials[1].user_attrs["counting"]
    capsys.readouterr()
    assert export.main(["--test", str(test), "--finalist", "7"]) == 2
    assert "no finalist with a finished run" in capsys.readouterr().err


@pytest.mark.slow
def test_export_before_any_finalist_run_exports_the_best_trial(tiny_files, tiny_profile, in_tmp, capsys):
    train, test, _ = tiny_files
    assert run_study(train, "--n-trials", "2") == 0  # the tiny profile has no stage
    capsys.readouterr()
    assert export.main(["--test", str(test)]) == 0
    out = capsys.readouterr().out
    assert "no finalist stage has run" in out and "finish the stage" not in out
    assert json.loads((in_tmp / "submission.json").read_text())["trial"] == load().best_trial.number


@pytest.fixture(scope="module")
def density_study(tmp_path_factory):
    """A tiny finished dots study whose trial 1 trains a density map, its training file ``train.npz`` relative."""
    return built_study_folder(tmp_path_factory, n_trials=2, density=True)


def test_refit_elsewhere_trains_on_the_training_file_the_study_recorded(density_study, tiny_files, in_tmp, capsys):
    train, test, _ = tiny_files
    assert train.parent == in_tmp  # another study's train.npz in the working folder
    storage = f"sqlite:///{density_study}/studies/cells.db"
    assert export.main(["--storage", storage, "--test", str(test), "--trial", "1", "--refit"]) == 0
    # The study's dots, not the working folder's masks: the trial's density targets are drawn at them.
    assert "on all 30 tiles (density maps of Gaussians of sigma 2.00 px at the centres)" in capsys.readouterr().out


@pytest.mark.parametrize("out", ["studies/cells.db", "studies/cells.db-journal", "studies/{folder}/artifacts/sub.csv"])
def test_out_over_the_study_database_or_in_its_folder_is_refused_nothing_written(finished_study, in_tmp, capsys, out):
    test, _ = finished_study
    out = out.format(folder=next(p.name for p in (in_tmp / "studies").iterdir() if p.is_dir()))
    before = {p: p.read_bytes() for p in (in_tmp / "studies").rglob("*") if p.is_file()}
    assert export.main(["--test", str(test), "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--out {out}: is " in err and "the study's" in err, err
    assert {p: p.read_bytes() for p in (in_tmp / "studies").rglob("*") if p.is_file()} == before
    assert load().trials  # the database still opens


@pytest.mark.slow
def test_default_export_weighs_the_finalists_out_of_fold_and_logs_an_interval_per_count(
    tiny_files, tiny_profile, in_tmp, capsys
):
    train, test, truth = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    expected = blend.stage_blend(finalists.results(load()))
    assert export.main(["--test", str(test), "--truth", str(truth), "--intervals"]) == 0
    log = json.loads((in_tmp / "submission.json").read_text())
    weights = log["blend"]["weights"]
    assert weights == {f"trial {t}": pytest.approx(w) for t, w in zip(expected.trials, expected.weights)}
    assert sum(weights.values()) == pytest.approx(1) and log["score"] == "nested out-of-fold MAE"
    # Every finalist with a weight, its search model and its 2 fold models; no other model.
    assert sorted({m["finalist"] for m in log["members"]}) == sorted(expected.used())
    assert len(log["members"]) == 3 * len(expected.used())
    images = np.load(test)["X"]
    counts = [
        count_setting(predict_prob(load_checkpoint(m["checkpoint"])[0], images, loss="bce"), m["counting"])
        for m in log["members"]
    ]
    keys = [(m["finalist"], m["fold"]) for m in log["members"]]
    table = pd.read_csv(in_tmp / "submission.csv")
    assert list(table.columns) == ["index", "count", "low", "high"]
    np.testing.assert_array_equal(table["count"], expected.counts(np.stack(counts), keys))
    low, high = expected.intervals(np.stack(counts), keys, 0.9)
    assert log["interval"] == 0.9 and log["low"] == low.tolist() and log["high"] == high.tolist()
    assert table["low"].tolist() == log["low"] and (table["low"] <= table["high"]).all()
    assert 0 <= log["test_coverage"] <= 1 and "intervals cover" in capsys.readouterr().out
    # --interval 0: no intervals; without --intervals, the competition's two columns.
    assert export.main(["--test", str(test), "--interval", "0", "--out", "plain.csv"]) == 0
    assert "low" not in json.loads((in_tmp / "plain.json").read_text())
    assert list(pd.read_csv(in_tmp / "plain.csv").columns) == ["index", "count"]
    with pytest.raises(SystemExit) as refused:
        export.main(["--test", str(test), "--interval", "1"])
    assert refused.value.code == 2
    assert "--interval: must be 0" in capsys.readouterr().err
