"""search.runtime.storage: journal URLs, and a PostgreSQL study shared by two machines that never shows its password."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import optuna
import pytest
from helpers import HANG_BOUND, PASSWORD, finished_trials, start_worker, tiny_args

from search import study
from search.runtime import storage

STATES = optuna.trial.TrialState


def pg_bin(name):
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]
    return found if isinstance(found, str) else (found[0] if found else None)


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1 with password auth; yields its URL with password."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql")
    base = Path(tempfile.mkdtemp(prefix="pgtest-"))
    as_user = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        shutil.chown(base, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    (base / "pw").write_text(PASSWORD)
    if as_user:
        shutil.chown(base / "pw", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", f"--pwfile={base / 'pw'}", "-A", "scram-sha-256"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-w",
            "start",
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fresh_db(postgres):
    """The server's URL with a new empty database."""
    import sqlalchemy

    name = f"t{uuid.uuid4().hex}"
    engine = sqlalchemy.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return postgres.rsplit("/", 1)[0] + "/" + name


def test_journal_url(tmp_path):
    assert storage.journal_path("journal:///studies/a.log") == "studies/a.log"
    assert storage.journal_path("journal:////abs/a.log") == "/abs/a.log"
    assert storage.journal_path("x/a.log") == "x/a.log"
    assert storage.journal_path("sqlite:///a.db") is None
    assert storage.default_url("c", 2) == "journal:///studies/c.journal.log"


@pytest.mark.slow  # subprocesses or a PostgreSQL server
def test_two_machines_share_a_postgres_study(tiny_files, tiny_profile, in_tmp, fresh_db):
    train, _, _ = tiny_files
    # The study is created first (README: start one worker, then the others), then grown by two at once.
    assert study.main(tiny_args(train, "--storage", fresh_db, "--n-trials", "1")) == 0
    procs = [start_worker(train, "--storage", fresh_db, "--n-trials", "8") for _ in range(2)]
    out = [p.communicate(timeout=HANG_BOUND)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], out
    s = optuna.load_study(study_name="cells", storage=fresh_db)
    numbers = [t.number for t in s.trials]
    assert numbers == list(range(len(numbers)))  # none lost, none twice
    assert len(finished_trials(s)) == 8 and all(t.state != STATES.RUNNING for t in s.trials)
    pids = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in finished_trials(s)}
    assert {p.pid for p in procs} <= pids  # both took part
    assert all("Traceback" not in o for o in out), out


@pytest.mark.slow  # subprocesses or a PostgreSQL server
def test_password_is_never_printed_or_stored(tiny_files, tiny_profile, in_tmp, fresh_db, capsys):
    train, _, _ = tiny_files
    assert study.main(tiny_args(train, "--storage", fresh_db, "--n-trials", "1")) == 0
    bad = fresh_db.replace("127.0.0.1:", "127.0.0.1:1").rsplit(":", 1)[0] + ":1/x"
    assert study.main(tiny_args(train, "--storage", bad)) == 2
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    assert "postgres:***@" in captured.out and "postgres:***@" in captured.err
    s = optuna.load_study(study_name="cells", storage=fresh_db)
    stored = (
        repr(s.user_attrs)
        + repr(s._storage.get_study_system_attrs(s._study_id))
        + "".join(repr(t.user_attrs) + repr(t.system_attrs) for t in s.trials)
    )
    assert PASSWORD not in stored
