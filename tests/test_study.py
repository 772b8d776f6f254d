"""End-to-end tests of `python -m search.study` on tiny data with a tiny profile."""

import contextlib
import io
import json
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import numpy as np
import optuna
import pytest
from helpers import Clock, blank_figures, disc_tiles, header_bomb, use_clock
from optuna_dashboard import wsgi
from tiny_worker import TINY

from model.train import EpochReport
from search import export, report, space, study
from search.runtime.storage import open_storage
from search.stages import objective, prepare

STATES = optuna.trial.TrialState
FLOAT = optuna.distributions.FloatDistribution(0, 1)


class PruneAfterFirst(optuna.pruners.BasePruner):
    """Prunes every trial but trial 0 at its first report: makes pruning deterministic."""

    def prune(self, study, trial):
        return trial.number > 0


class PruneAll(optuna.pruners.BasePruner):
    """Prunes every trial at its first report."""

    def prune(self, study, trial):
        return True


def run_study(train, *extra):
    return study.main(["--train", str(train), "--profile", "tiny", "--seed", "0", *extra])


def load(name="cells"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///studies/{name}.db")


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
    assert [t.state for t in trials] == [STATES.COMPLETE, STATES.FAIL]
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
    assert run_study(train, "--n-trials", "2") == 0
    trial, warm = load().trials
    assert trial.state == STATES.COMPLETE and trial.user_attrs["baseline"]
    assert warm.state == STATES.WAITING  # no trial starts after the deadline
    assert (in_tmp / trial.user_attrs["checkpoint"] / "model.safetensors").is_file()


def test_timeout_fails_a_running_trial_and_queues_it_again(tiny_files, tiny_profile, in_tmp, monkeypatch, capsys):
    real_fit, clock = objective.fit, Clock()
    use_clock(monkeypatch, clock)
    monkeypatch.setattr(objective, "fit", fit_hitting_deadline_in_epoch(1, clock))
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "1") == 0
    stopped, warm, queued = load().trials
    assert stopped.state == STATES.FAIL and "timeout" in stopped.user_attrs["fail_reason"]
    assert warm.state == STATES.WAITING and warm.user_attrs["warm_start"]
    assert queued.state == STATES.WAITING and queued.user_attrs == {"baseline": True, "requeued_from": 0}
    assert queued.system_attrs["fixed_params"] == stopped.params
    out = capsys.readouterr().out
    assert "no finished trial yet: the timeout stopped a trial" in out
    # The stopped trial did not count: the same command runs it again, to the end, before the
    # warm start queued ahead of it, which is queued again behind it.
    monkeypatch.setattr(objective, "fit", real_fit)
    assert run_study(train, "--n-trials", "2") == 0
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
    assert "+- n/a" in out and "95% interval" not in out and "significant" not in out
    trial = load().trials[0]
    assert trial.user_attrs["value_se"] is None and trial.user_attrs["value_out_of_sample"] is False


def test_unknown_device_creates_nothing(tiny_files, tiny_profile, in_tmp, capsys):
    train, _, _ = tiny_files
    assert run_study(train, "--device", "tpu9") == 2
    assert "--device" in capsys.readouterr().err
    assert not (in_tmp / "studies").exists()
