"""search.runtime.artifacts: trial artifacts and the study note through optuna-dashboard, the project folder."""

import json
import threading
import urllib.request
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna_dashboard import get_note, wsgi

from search import study
from search.runtime.artifacts import TRIAL_ARTIFACTS, artifact_dir, project_dir

PNG = b"\x89PNG"


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def get(url):
    with urllib.request.urlopen(url) as response:
        return response.read()


@pytest.mark.slow  # an optuna-dashboard server over a whole study
@pytest.mark.real_figures
def test_dashboard_serves_trial_artifacts_and_study_note(tiny_files, tiny_profile, in_tmp, capsys):
    train, _, _ = tiny_files
    assert study.main(["--train", str(train), "--profile", "tiny", "--n-trials", "2"]) == 0
    out = capsys.readouterr().out
    storage = optuna.storages.RDBStorage("sqlite:///studies/cells.db")
    folder = artifact_dir(optuna.load_study(study_name="cells", storage=storage))
    assert folder.parent.name.startswith("cells-")
    assert f"optuna-dashboard sqlite:///studies/cells.db --artifact-dir {folder} --host 127.0.0.1" in out
    app = wsgi(storage, artifact_store=FileSystemArtifactStore(folder))
    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = f"http://127.0.0.1:{server.server_port}"
        (summary,) = json.loads(get(f"{root}/api/studies"))["study_summaries"]
        assert summary["study_name"] == "cells"
        detail = json.loads(get(f"{root}/api/studies/{summary['study_id']}?after=0"))
        assert [t["state"] for t in detail["trials"]] == ["Complete", "Complete"]
        for trial in detail["trials"]:
            by_name = {a["filename"]: a for a in trial["artifacts"]}
            assert sorted(by_name) == sorted(TRIAL_ARTIFACTS)
            assert by_name["learning-curve.png"]["mimetype"] == "image/png"
            for name in ("learning-curve.png", "val-overlay.png"):
                body = get(f"{root}/artifacts/{summary['study_id']}/{trial['trial_id']}/{by_name[name]['artifact_id']}")
                assert body.startswith(PNG), name
            config = json.loads(
                get(
                    f"{root}/artifacts/{summary['study_id']}/{trial['trial_id']}/"
                    f"{by_name['config.json']['artifact_id']}"
                )
            )
            assert config["counting"] == next(
                json.loads(a["value"]) for a in trial["user_attrs"] if a["key"] == "counting"
            )
        # The note names the data and the profile, and after the baseline trial its score.
        note = detail["note"]["body"]
        baseline = optuna.load_study(study_name="cells", storage=storage).trials[0]
        assert "24 training, 6 validation" in note and "`tiny`" in note
        assert f"trial 0: val count-MAE {baseline.value:.3f}" in note
        # Written at creation, then updated when the baseline and each new best trial end.
        assert detail["note"]["version"] >= 2
        assert "against the reference" in note or "is the best trial" in note
        assert "split by source image" in note
    finally:
        server.shutdown()


def test_trial_records_per_tile_validation_counts(tiny_files, tiny_profile, in_tmp):
    train, _, _ = tiny_files
    assert study.main(["--train", str(train), "--profile", "tiny", "--n-trials", "1"]) == 0
    s = optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db")
    counts = s.trials[0].user_attrs["val_counts"]
    assert len(counts["true"]) == len(counts["pred"]) == 6
    mae = np.abs(np.subtract(counts["pred"], counts["true"])).mean()
    attrs = s.trials[0].user_attrs
    assert mae == pytest.approx(attrs["counting_scores"][attrs["counting_name"]], abs=1e-4)
    assert np.abs(attrs["val_errors"]).mean() == pytest.approx(s.trials[0].value)
    # Resuming keeps the note: it is written once, when the study is new.
    note = get_note(s)
    assert study.main(["--train", str(train), "--profile", "tiny", "--n-trials", "1"]) == 0
    assert get_note(s) == note


def test_study_recorded_before_the_project_folder_resolves_from_here(tmp_path):
    url = f"sqlite:///{tmp_path}/studies/cells.db"
    assert project_dir({}, url) == Path(".")  # as before: the working folder
    assert project_dir({"project_from_storage": ".."}, url) == tmp_path
    assert project_dir({"project_from_storage": ".."}, "postgresql://u@host/db") == Path(".")
