"""End-to-end tests of `python -m search.study` on tiny data with a tiny profile."""

import contextlib
import io
import json
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import cv2
import numpy as np
import optuna
import pandas as pd
import pytest
from helpers import Clock, blank_figures, disc_set, disc_tiles, dots_file, header_bomb, load, run_study, use_clock
from optuna_dashboard import get_note, wsgi
from tiny_worker import TINY

from data.importer import main as import_main
from model.train import EpochReport
from search import export, report, space, study
from search.stages import objective, prepare

STATES = optuna.trial.TrialState


class PruneAfterFirst(optuna.pruners.BasePruner):
    """Prunes every trial but trial 0 at its first report: makes pruning deterministic."""

    def prune(self, study, trial):
        return trial.number > 0


class PruneAll(optuna.pruners.BasePruner):
    """Prunes every trial at its first report."""

    def prune(self, study, trial):
        return True


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 3-trial tiny study run once, for the tests that read what it recorded: folder, output, study."""
    folder = tmp_path_factory.mktemp("finished")
    X, y, counts = disc_tiles(30, seed=1)
    np.savez_compressed(folder / "train.npz", X=X, y=y, counts=counts)
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.chdir(folder)
        mp.setitem(space.PROFILES, "tiny", TINY)
        blank_figures(mp)
        assert run_study(folder / "train.npz", "--n-trials", "3") == 0
    s = optuna.load_study(study_name="cells", storage=f"sqlite:///{folder}/studies/cells.db")
    return folder, out.getvalue(), s


def test_a_study_runs_the_reference_then_the_warm_start_then_sampled_trials(finished):
    _, _, s = finished
    assert [t.state for t in s.trials] == [STATES.COMPLETE] * 3
    baseline, warm, sampled = s.trials
    assert baseline.user_attrs["baseline"] is True and warm.user_attrs["warm_start"] is True
    assert baseline.params == space.reference_config(TINY) and warm.params == space.warm_start(TINY)
    assert "baseline" not in sampled.user_attrs and "warm_start" not in sampled.user_attrs


def test_a_tuned_trial_shows_its_counting_as_attributes_not_parameters(finished):
    _, _, s = finished
    for t in s.trials:
        assert set(t.params) == {"lr", "epochs", "depth", "upsample", "schedule", "augment"}
        assert t.user_attrs["offset"] == t.user_attrs["counting"]["offset"]
    attrs = s.trials[0].user_attrs
    assert {f"val_mae_offset_{o:+d}" for o in (-1, 0, 1, 2)} <= set(attrs)
    assert {"train_seconds", "device", "n_params", "val_mae_reference_counting"} <= set(attrs)
    assert len(attrs["counting_scores"]) == len(space.counting_grid())


def test_a_trial_value_is_its_out_of_sample_error_with_a_standard_error(finished):
    _, _, s = finished
    baseline = s.trials[0]
    attrs = baseline.user_attrs
    # The shown counting is the best on all validation tiles; the value scores that choice out of
    # sample, from the per-tile errors it records.
    assert attrs["counting_scores"][attrs["counting_name"]] == min(attrs["counting_scores"].values())
    assert baseline.value == pytest.approx(np.abs(attrs["val_errors"]).mean())
    assert attrs["value_se"] > 0
    assert len(s.user_attrs["val_groups"]) == len(attrs["val_errors"])


def test_a_trial_keeps_its_checkpoint_with_its_counting(finished):
    folder, _, s = finished
    attrs = s.trials[0].user_attrs
    assert (folder / attrs["checkpoint"] / "model.safetensors").is_file()
    assert json.loads((folder / attrs["checkpoint"] / "config.json").read_text())["counting"] == attrs["counting"]


def test_the_study_records_its_profile_and_split(finished):
    _, _, s = finished
    assert s.user_attrs["profile"] == "tiny"
    assert s.user_attrs["split"] == "image" and "by source image" in s.user_attrs["split_rule"]


def test_the_output_names_each_trial_the_dashboard_and_the_reference(finished):
    _, out, _ = finished
    assert "trial 2 finished" in out and "optuna-dashboard sqlite:///studies/cells.db" in out
    assert "reference (trial 0)" in out


def test_the_same_command_resumes_without_repeating_a_trial(tiny_files, tiny_profile, in_tmp):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2") == 0
    # A larger target resumes: earlier trials are kept, none repeated.
    assert run_study(train, "--n-trials", "3") == 0
    s = load()
    assert [t.state for t in s.trials] == [STATES.COMPLETE] * 3
    assert not s.trials[2].user_attrs.get("baseline") and not s.trials[2].user_attrs.get("warm_start")
    # Reached the target: nothing more to run.
    assert run_study(train, "--n-trials", "3") == 0
    assert len(load().trials) == 3


def test_weak_trials_are_pruned(tiny_files, tiny_profile, in_tmp, monkeypatch, capsys):
    monkeypatch.setattr(prepare, "make_pruner", lambda name, profile: PruneAfterFirst())
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "3", "--objective", "sampled") == 0
    s = load()
    assert [t.state for t in s.trials] == [STATES.COMPLETE, STATES.PRUNED, STATES.PRUNED]
    assert all(list(t.intermediate_values) == [1] for t in s.trials[1:])
    assert "trial 1 pruned at epoch 1" in capsys.readouterr().out
    # Sampled objective: the counting is a parameter, and the value is its MAE.
    t0 = s.trials[0]
    assert t0.params == space.reference_config(tiny_profile, "sampled")
    assert t0.user_attrs["counting"] == space.counting_of(t0.params) == space.REFERENCE_COUNTING
    assert t0.value == pytest.approx(t0.user_attrs["counting_scores"][t0.user_attrs["counting_name"]], abs=1e-4)


def test_diverged_trial_fails_alone(tiny_files, tiny_profile, in_tmp, monkeypatch):
    real_fit = objective.fit
    calls = []

    def fit_diverging_once(net, train, *args, on_epoch, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            on_epoch(EpochReport(1, float("nan"), float("nan"), float("nan"), 0.0))
        return real_fit(net, train, *args, on_epoch=on_epoch, **kwargs)

    monkeypatch.setattr(objective, "fit", fit_diverging_once)
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "3") == 0
    trials = load().trials
    assert [t.state for t in trials] == [STATES.COMPLETE, STATES.FAIL, STATES.COMPLETE, STATES.COMPLETE]
    assert "nan" in trials[1].user_attrs["fail_reason"]


@pytest.mark.slow  # an optuna-dashboard server over a whole study
def test_dashboard_server_lists_study_with_all_parameters(tiny_files, tiny_profile, in_tmp):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2") == 0
    app = wsgi(optuna.storages.RDBStorage("sqlite:///studies/cells.db"))

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/api"
        studies = json.load(urllib.request.urlopen(f"{base}/studies"))["study_summaries"]
        assert [s["study_name"] for s in studies] == ["cells"]
        detail = json.load(urllib.request.urlopen(f"{base}/studies/{studies[0]['study_id']}?after=0"))
        assert len(detail["trials"]) == 2
        for trial in detail["trials"]:
            # The brief's five parameters: four sampled, the offset chosen and shown as an attribute.
            assert {p["name"] for p in trial["params"]} >= {"lr", "epochs", "depth", "upsample"}
            assert "offset" in {a["key"] for a in trial["user_attrs"]}
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-trials", "0"], "--n-trials must be at least 1"),
        (["--timeout", "-5"], "--timeout must be positive"),
        (["--device", "tpu9"], "--device"),
        (["--storage", "nosuchdb://x"], "cannot open storage"),
        (["--storage", "not a url"], "not a storage URL"),
        (["--storage", "postgresql://u:pw@127.0.0.1:1/x"], "cannot open storage postgresql://u:***@127.0.0.1:1/x"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "-2"], "--workers must be at least 1"),
        (["--n-trials", "-1"], "--n-trials must be at least 1"),
        (["--heartbeat", "0"], "--heartbeat must be at least 1"),
        (["--workers", "2", "--storage", "sqlite:///studies/x.db"], "cannot share SQLite"),
    ],
)
def test_bad_arguments_exit_2(tiny_files, tiny_profile, in_tmp, capsys, args, message):
    train, _, _ = tiny_files
    assert run_study(train, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--timeout", "nan"], "--timeout must be positive and finite, got nan"),
        (["--timeout", "inf"], "--timeout must be positive and finite, got inf"),
        (["--seed", "-1"], "--seed must be in 0..2147483647, got -1"),
        (["--seed", "4294967295"], "--seed must be in 0..2147483647, got 4294967295"),
        (["--finalists", "1"], "--finalists must be 0"),
        (["--finalists", "-2"], "--finalists must be 0"),
        (["--finalists", "11"], "--finalists must be 0"),
        (["--folds", "1"], "--folds must be in 2..10"),
        (["--folds", "600"], "--folds must be in 2..10"),
    ],
)
def test_numbers_out_of_range_exit_2_before_writing(tiny_files, tiny_profile, in_tmp, capsys, args, message):
    train, _, _ = tiny_files
    assert run_study(train, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (in_tmp / "studies").exists()


def test_bad_data_file_exits_2(in_tmp, tiny_profile, capsys):
    bad = in_tmp / "train.npz"
    bad.write_text("not an archive")
    assert run_study(bad) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.npz" in err


def test_array_declared_too_large_exits_2_before_allocating(in_tmp, tiny_profile, capsys):
    bomb = header_bomb(in_tmp / "bomb.npz")
    assert run_study(bomb) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bomb.npz: array 'X' would take 16384.0 GiB" in err
    assert not (in_tmp / "studies").exists()


def test_resume_refuses_changed_data_or_profile(tiny_files, tiny_profile, in_tmp, capsys, monkeypatch):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "1") == 0
    monkeypatch.setitem(space.PROFILES, "tiny2", space.Profile("tiny2", 2, (1, 1), 60, 1))
    assert study.main(["--train", str(train), "--profile", "tiny2", "--n-trials", "2"]) == 2
    assert "uses profile 'tiny'" in capsys.readouterr().err
    train.write_bytes(train.read_bytes() + b"\0")
    assert run_study(train, "--n-trials", "2") == 2
    assert "differs from the data" in capsys.readouterr().err
    assert len(load().get_trials(states=(STATES.COMPLETE, STATES.RUNNING, STATES.FAIL))) == 1


def test_study_with_another_objective_exits_2(tiny_files, tiny_profile, in_tmp, capsys):
    (in_tmp / "studies").mkdir()
    optuna.create_study(study_name="cells", storage="sqlite:///studies/cells.db", direction="maximize")
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exists with another objective" in err
    assert load().trials == []


def test_ctrl_c_keeps_finished_trials_and_same_command_resumes(tiny_files, tiny_profile, in_tmp, monkeypatch, capsys):
    real_fit = objective.fit
    calls = []

    def fit_interrupted_in_trial_1(net, train, *args, on_epoch, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_fit(net, train, *args, on_epoch=on_epoch, **kwargs)

    monkeypatch.setattr(objective, "fit", fit_interrupted_in_trial_1)
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "3") == 130
    assert "run the same command to resume" in capsys.readouterr().err
    trials = load().trials
    # The interrupted warm start is queued again, to continue from its saved state.
    assert [t.state for t in trials] == [STATES.COMPLETE, STATES.FAIL, STATES.WAITING]
    assert trials[2].user_attrs["warm_start"] and trials[2].user_attrs["resume_key"] == "warm-start"
    assert run_study(train, "--n-trials", "3") == 0
    states = [t.state for t in load().trials]
    assert states[:2] == [STATES.COMPLETE, STATES.FAIL] and states.count(STATES.COMPLETE) == 3


def fit_hitting_deadline_in_epoch(epoch, clock):
    """``fit`` that moves ``clock`` past the deadline during epoch ``epoch``."""
    real_fit = objective.fit

    def fit(*args, on_epoch, **kwargs):
        def report(r):
            if r.epoch == epoch:
                clock.skew = 1e6
            on_epoch(r)

        return real_fit(*args, on_epoch=report, **kwargs)

    return fit


def test_resume_loads_the_checked_file_so_a_copy_elsewhere_joins(tiny_files, tiny_profile, in_tmp):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "1") == 0
    moved = in_tmp / "elsewhere" / "train.npz"
    moved.parent.mkdir()
    train.rename(moved)  # the path the study recorded is gone; an identical file is here
    assert run_study(moved, "--n-trials", "2") == 0
    assert [t.state for t in load().trials] == [STATES.COMPLETE] * 2


def test_bad_data_file_creates_nothing(tiny_files, tiny_profile, in_tmp, capsys):
    train, _, _ = tiny_files
    bad = in_tmp / "bad.npz"
    bad.write_text("not an archive")
    assert run_study(bad) == 2
    assert not (in_tmp / "studies").exists()
    # The study name is still free for the corrected file.
    assert run_study(train, "--n-trials", "1") == 0
    assert [t.state for t in load().trials] == [STATES.COMPLETE, STATES.WAITING]  # the warm start is next


@pytest.mark.parametrize("n", [1, 2])  # 2 tiles of 2 images: one would be left for training
def test_too_few_tiles_to_split_exit_2(in_tmp, tiny_profile, capsys, n):
    X, y, _ = disc_tiles(n)
    few = in_tmp / "few.npz"
    np.savez(few, X=X, y=y)
    assert run_study(few) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "few.npz" in err and "split" in err
    assert not (in_tmp / "studies").exists()


def test_timeout_in_the_last_epoch_keeps_the_trial(tiny_files, tiny_profile, in_tmp, monkeypatch):
    clock = Clock()
    use_clock(monkeypatch, clock)
    monkeypatch.setattr(objective, "fit", fit_hitting_deadline_in_epoch(2, clock))  # the baseline trains 2 epochs
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", "--timeout", "600") == 0
    trial, warm = load().trials
    assert trial.state == STATES.COMPLETE and trial.user_attrs["baseline"]
    assert warm.state == STATES.WAITING  # no trial starts after the deadline
    assert (in_tmp / trial.user_attrs["checkpoint"] / "model.safetensors").is_file()


def test_timeout_fails_a_running_trial_and_queues_it_again(tiny_files, tiny_profile, in_tmp, monkeypatch, capsys):
    real_fit, clock = objective.fit, Clock()
    use_clock(monkeypatch, clock)
    monkeypatch.setattr(objective, "fit", fit_hitting_deadline_in_epoch(1, clock))
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "1", "--timeout", "600") == 0
    stopped, warm, queued = load().trials
    assert stopped.state == STATES.FAIL and "timeout" in stopped.user_attrs["fail_reason"]
    assert warm.state == STATES.WAITING and warm.user_attrs["warm_start"]
    assert queued.state == STATES.WAITING
    assert queued.user_attrs == {"baseline": True, "requeued_from": 0, "resume_key": "reference"}
    assert queued.system_attrs["fixed_params"] == stopped.params
    out = capsys.readouterr().out
    assert "no finished trial yet: the timeout stopped a trial" in out
    # The stopped trial did not count: the same command continues it from its saved epoch, to
    # the end, before the warm start queued ahead of it, which is queued again behind it.
    monkeypatch.setattr(objective, "fit", real_fit)
    assert run_study(train, "--n-trials", "2") == 0
    assert "trial 2 epoch 1/2: restored from the saved state" in capsys.readouterr().out
    trials = load().trials
    assert [t.state for t in trials] == [STATES.FAIL, STATES.FAIL, STATES.COMPLETE, STATES.COMPLETE]
    assert trials[1].user_attrs["fail_reason"] == "not run: queued again as trial 3, behind trial 2, which starts first"
    assert trials[2].params == stopped.params and trials[2].user_attrs["baseline"]
    assert trials[3].params == space.warm_start(tiny_profile) and trials[3].user_attrs["warm_start"]
    assert trials[2].datetime_start < trials[3].datetime_start


def test_no_complete_trial_never_says_run_again_when_that_does_nothing(
    tiny_files, tiny_profile, in_tmp, monkeypatch, capsys
):
    monkeypatch.setattr(prepare, "make_pruner", lambda name, profile: PruneAll())
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "1") == 0
    assert run_study(train, "--n-trials", "1") == 0
    out = capsys.readouterr().out
    assert "run the same command again" not in out and "raise --n-trials" in out


def test_baseline_runs_first_after_ctrl_c_in_it(tiny_files, tiny_profile, in_tmp, monkeypatch, capsys):
    real_fit = objective.fit

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(objective, "fit", interrupted)
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "1") == 130
    monkeypatch.setattr(objective, "fit", real_fit)
    # One trial: the baseline, although the warm start was queued before it.
    assert run_study(train, "--n-trials", "1") == 0
    trials = load().trials
    assert [t.state for t in trials] == [STATES.FAIL, STATES.FAIL, STATES.COMPLETE, STATES.WAITING]
    assert trials[2].user_attrs["baseline"] and trials[2].params == space.reference_config(tiny_profile)
    assert "reference (trial 2): val MAE" in capsys.readouterr().out  # the summary compares with it
    # The warm start is not lost: it runs next.
    assert run_study(train, "--n-trials", "2") == 0
    trials = load().trials
    assert [t.state for t in trials] == [STATES.FAIL, STATES.FAIL, STATES.COMPLETE, STATES.COMPLETE]
    assert trials[3].user_attrs["warm_start"] and trials[3].params == space.warm_start(tiny_profile)


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "cells db"])
def test_study_name_must_stay_inside_studies(tiny_files, tiny_profile, in_tmp, capsys, name):
    train, _, _ = tiny_files
    for main in (
        lambda: run_study(train, "--study-name", name, "--n-trials", "1"),
        lambda: export.main(["--study-name", name]),
        lambda: report.main(["--study-name", name]),
    ):
        assert main() == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--study-name" in err and "letters, digits" in err
    assert list(in_tmp.parent.glob("x*")) == [] and not (in_tmp / "studies").exists()


@pytest.mark.slow  # two whole studies
def test_single_process_study_is_reproducible(tiny_files, tiny_profile, in_tmp, monkeypatch):
    train, _, _ = tiny_files
    runs = []
    for folder in ("a", "b"):
        (in_tmp / folder).mkdir()
        monkeypatch.chdir(in_tmp / folder)
        assert run_study(train, "--n-trials", "3") == 0
        runs.append([(t.params, t.value) for t in load().trials])
    assert runs[0] == runs[1]


def test_two_source_images_give_a_verdict_without_an_interval(in_tmp, tiny_profile, capsys):
    X, y, counts = disc_tiles(20, seed=4)
    two = in_tmp / "two.npz"
    np.savez(two, X=X, y=y, counts=counts, groups=np.repeat([0, 1], 10))  # one image in validation
    assert run_study(two, "--n-trials", "2") == 0
    out = capsys.readouterr().out
    assert "warning: 1 validation image (an interval needs 5)" in out
    assert "val MAE" in out and "(no interval) with" in out and "95% interval" not in out and "significant" not in out
    trial = load().trials[0]
    assert trial.user_attrs["value_se"] is None and trial.user_attrs["value_out_of_sample"] is False


def test_unknown_device_creates_nothing(tiny_files, tiny_profile, in_tmp, capsys):
    train, _, _ = tiny_files
    assert run_study(train, "--device", "tpu9") == 2
    assert "--device" in capsys.readouterr().err
    assert not (in_tmp / "studies").exists()


def test_a_cpu_without_native_bf16_is_told_at_the_start(tiny_files, tiny_profile, in_tmp, monkeypatch, capsys):
    monkeypatch.setattr(study, "resolve_precision", lambda precision, device: "fp32")
    train, _, _ = tiny_files
    assert study.main(["--train", str(train), "--profile", "tiny", "--n-trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "this CPU has no native bf16: training runs in fp32" in out
    assert out.index("no native bf16") < out.index("epoch 1/")


# --- studies of dots ---------------------------------------------------------------


T = 32  # the tiny tiles' side
TILE = ["--tile", str(T), "--allow-empty"]  # the importer's options for folders of one-tile images, some empty


def test_dots_study_samples_and_records_the_radius(tiny_dots, tiny_profile, in_tmp, capsys):
    assert run_study(tiny_dots, "--n-trials", "3") == 0
    s = load()
    assert s.user_attrs["annotation"] == "dots"
    baseline, warm, sampled = s.trials
    assert baseline.params == space.reference_config(tiny_profile, annotation="dots")
    assert warm.params == space.warm_start(tiny_profile, "dots")
    assert baseline.params["target_radius"] == warm.params["target_radius"] == space.DEFAULT_RADIUS
    assert sampled.state == STATES.COMPLETE and 2 <= sampled.params["target_radius"] <= 5
    for t in s.trials:
        config = json.loads((in_tmp / t.user_attrs["checkpoint"] / "config.json").read_text())
        assert config["params"]["target_radius"] == t.params["target_radius"]
    out = capsys.readouterr().out
    assert "true counts: stored counts" in out
    assert "trains from dots ('points', no masks): disks of radius 2-5 px (target_radius) drawn at the centres" in out
    assert "- trains from dots ('points', no masks)" in get_note(s)


@pytest.mark.parametrize("crowded", [False, True], ids=["sparse", "crowded"])
def test_crowded_dots_give_a_warm_start_that_trains_density_maps(tmp_path, tiny_profile, in_tmp, capsys, crowded):
    arrays = disc_set(30, seed=1)
    points = arrays["points"]
    if crowded:  # a second dot 3 px from every dot: their default disks would merge
        points = np.concatenate([points, points + [0, 3, 0]])
        points = points[(points[:, 1] < T)]
    path = tmp_path / "dots.npz"
    counts = np.bincount(points[:, 0].astype(int), minlength=30)
    np.savez(path, X=arrays["X"], counts=counts, points=points)
    assert run_study(path, "--n-trials", "2") == 0
    warm = load().trials[1]
    assert warm.params == space.warm_start(tiny_profile, "dots", crowded)
    assert warm.params["target"] == ("density" if crowded else "disks")
    out = capsys.readouterr().out
    assert f"where disks of radius 3 px merge; {'crowded' if crowded else 'not crowded'}" in out
    assert (load().user_attrs["dots_crowding"] > space.CROWDED_SHARE) == crowded


def density_warm_start(monkeypatch, sigma=2.0):
    """Make a new study's warm start (trial 1) train a density map of ``sigma``: trial 0 stays on disks."""
    disks = space.warm_start

    def warm_start(profile, annotation="masks", crowded=False):
        params = {k: v for k, v in disks(profile, annotation).items() if k != space.RADIUS}
        return {**params, space.TARGET: "density", space.SIGMA: sigma}

    monkeypatch.setattr(space, "warm_start", warm_start)


def test_density_trial_counts_by_its_sum_through_study_and_export(
    tiny_dots, tiny_files, tiny_profile, in_tmp, monkeypatch, capsys
):
    density_warm_start(monkeypatch)
    assert run_study(tiny_dots, "--n-trials", "2") == 0
    baseline, density = load().trials
    assert baseline.params[space.TARGET] == "disks" and space.SIGMA not in baseline.params
    assert density.params[space.TARGET] == "density" and space.RADIUS not in density.params
    # Scored on the density counter's settings only, and a disks trial on the thresholding ones only.
    assert set(density.user_attrs["counting_scores"]) == {f"density {o:+d}" for o in range(-1, 3)}
    assert density.user_attrs["counting"]["counter"] == "density"
    assert density.user_attrs["val_mae_reference_counting"] is None
    assert not any(k.startswith("density") for k in baseline.user_attrs["counting_scores"])
    config = json.loads((in_tmp / density.user_attrs["checkpoint"] / "config.json").read_text())
    assert config["train"]["loss"] == "mse" and config["params"][space.SIGMA] == 2.0
    assert config["train"]["min_epoch_steps"] == tiny_profile.epoch_steps

    _, test, truth = tiny_files
    for extra in ([], ["--refit"]):
        out = in_tmp / f"density{len(extra)}.csv"
        assert export.main(["--trial", "1", "--test", str(test), "--truth", str(truth), *extra, "--out", str(out)]) == 0
        log = json.loads(out.with_suffix(".json").read_text())
        assert log["counting"]["counter"] == "density" and log["test_mae"] >= 0
        assert len(pd.read_csv(out)) == 6
    assert "on all 30 tiles (density maps of Gaussians of sigma 2.00 px at the centres)" in capsys.readouterr().out


def test_resume_with_another_annotation_is_refused(tiny_files, tiny_dots, tiny_profile, in_tmp, capsys):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "1") == 0
    assert load().user_attrs["annotation"] == "masks"
    assert run_study(tiny_dots, "--n-trials", "2") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"study 'cells' trains from masks, but {tiny_dots} has dots and no masks; use another --study-name" in err
    assert len(load().trials) == 2  # the baseline and the queued warm start, nothing more


@pytest.mark.parametrize(
    "points, message",
    [([[0, 3, 40]], "'points' row 0 at (3, 40) lies outside"), (np.zeros((0, 3)), "'points' is empty")],
)
def test_bad_points_exit_2_before_the_study_exists(tmp_path, tiny_profile, in_tmp, capsys, points, message):
    path = dots_file(tmp_path, points=np.asarray(points, np.float32), counts=None)
    assert run_study(path) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"dots.npz: {message}" in err
    assert not (in_tmp / "studies").exists()


# Trials 0-3 of a tiny mask study with seed 0 as the code before dots drew them (the baseline, the
# warm start, then TPE's random start-up): dots must not change what a mask study samples.
KEYS = ("lr", "epochs", "depth", "upsample", "schedule", "augment")
MASK_STUDY_PARAMS = [
    dict(zip(KEYS, values))
    for values in (
        (2e-4, 2, 4, "interp", "constant", False),
        (2e-3, 2, 4, "interp", "cosine", True),
        (0.0007447144904083078, 1, 3, "interp", "cosine", False),
        (0.0017468984743535486, 2, 4, "transpose", "constant", False),
    )
]


def test_mask_study_draws_what_it_drew_before_dots(tiny_files, tiny_profile, in_tmp):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "4") == 0
    assert [t.params for t in load().trials] == MASK_STUDY_PARAMS


def _write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), path


def dots_folder(root, n, seed):
    """``n`` disc images of one tile each in root/images, their dots images (a white pixel per cell) in root/dots."""
    arrays = disc_set(n, seed=seed)
    for i, image in enumerate(arrays["X"]):
        dots = np.zeros((T, T), np.uint8)
        for _, r, c in arrays["points"][arrays["points"][:, 0] == i].astype(int):
            dots[r, c] = 255
        _write(root / "images" / f"{i:03d}.png", image)
        _write(root / "dots" / f"{i:03d}.png", dots)
    return root / "images", root / "dots"


@pytest.mark.slow  # a whole study with its finalist stage, then two exports and a report
def test_dots_folder_to_study_to_submission(tiny_profile, in_tmp, capsys):
    # The README's three commands: import, study, export (the test set imported likewise).
    train_images, train_dots = dots_folder(in_tmp / "train", 30, seed=1)
    test_images, test_dots = dots_folder(in_tmp / "test", 6, seed=2)
    for images, dots, out, extra in (
        (train_images, train_dots, "train.npz", []),
        (test_images, test_dots, "test.npz", ["--counts-csv", "test_counts.csv"]),
    ):
        assert import_main([str(images), "--dots", str(dots), "--out", out, *TILE, *extra]) == 0
    with np.load("train.npz") as z:
        assert "y" not in z.files and len(z["X"]) == 30
    stage = ["--n-trials", "3", "--finalists", "2", "--folds", "2"]
    assert study.main(["--study-name", "mine", "--train", "train.npz", "--profile", "tiny", *stage]) == 0
    s = load("mine")
    assert s.user_attrs["annotation"] == "dots"
    assert all(2 <= t.params["target_radius"] <= 5 for t in s.trials)
    runs = optuna.load_study(study_name="mine:finalists", storage="sqlite:///studies/mine.db").trials
    assert len(runs) == 4 and all(r.state == STATES.COMPLETE and "target_radius" in r.params for r in runs)
    out = capsys.readouterr().out
    assert "trains from dots" in out and "Verdict out of fold:" in out

    truth = ["--test", "test.npz", "--truth", "test_counts.csv"]
    assert export.main(["--study-name", "mine", *truth, "--out", "mine.csv"]) == 0
    log = json.loads((in_tmp / "mine.json").read_text())
    assert "fold models" in log["exported"] and len(log["members"]) == 3 and log["test_mae"] >= 0
    assert len(pd.read_csv("mine.csv")) == 6

    assert export.main(["--study-name", "mine", *truth, "--refit", "--out", "refit.csv"]) == 0
    log = json.loads((in_tmp / "refit.json").read_text())
    assert log["refit"] and all(m["checkpoint"].endswith("refit") for m in log["members"])
    radius = log["params"]["target_radius"]
    assert f"on all 30 tiles (disks of radius {radius} px at the centres)" in capsys.readouterr().out
    for member in log["members"]:
        config = json.loads((in_tmp / member["checkpoint"] / "config.json").read_text())
        assert config["refit"] and config["params"]["target_radius"] == radius
    assert len(pd.read_csv("refit.csv")) == 6
    assert report.main(["--study-name", "mine", "--out", "report"]) == 0  # its plots take target_radius too
    assert (in_tmp / "report" / "report.html").is_file()
