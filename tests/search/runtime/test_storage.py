"""search.runtime.storage: journal URLs, and a PostgreSQL study shared by two machines that never shows its password."""

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path

import optuna
import pytest
from helpers import HANG_BOUND, PASSWORD, finished_trials, start_worker, tiny_args
from sqlalchemy.exc import OperationalError

from search import study
from search.errors import UsageError
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


def test_a_new_sqlite_file_created_by_another_process_at_the_same_moment_is_joined(in_tmp, monkeypatch):
    real, calls = storage.RDBStorage, []

    def created_meanwhile(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:  # both found no tables; the other process created them first
            real(url, **kwargs)
            raise OperationalError("CREATE TABLE studies", {}, sqlite3.OperationalError("table studies already exists"))
        return real(url, **kwargs)

    monkeypatch.setattr(storage, "RDBStorage", created_meanwhile)
    monkeypatch.setattr(storage, "CREATE_RETRY_SECONDS", 0)
    shared = storage.open_storage("sqlite:///studies/new.db")
    assert len(calls) == 2 and optuna.get_all_study_names(shared) == []


def test_a_storage_error_other_than_a_concurrent_create_is_not_retried(in_tmp, monkeypatch, capsys):
    calls = []

    def broken(url, **kwargs):
        calls.append(url)
        raise OperationalError("SELECT", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(storage, "RDBStorage", broken)
    with pytest.raises(UsageError, match="^cannot open storage sqlite:///studies/x.db: .*disk I/O error"):
        storage.open_storage("sqlite:///studies/x.db")
    assert len(calls) == 1


@pytest.mark.parametrize("url", ["sqlite:///studies/cell.db", "studies/cell.journal.log", "sqlite:///nodir/cells.db"])
def test_loading_a_study_from_a_storage_file_that_is_not_there_creates_nothing(in_tmp, url):
    (in_tmp / "studies").mkdir()
    with pytest.raises(UsageError, match=r"^storage .*: no file .*cell.* \(check the path; nothing was created\)$"):
        storage.load_existing_study("cells", url)
    assert list(in_tmp.rglob("*")) == [in_tmp / "studies"]


def test_finding_a_default_storage_that_is_not_there_creates_no_folder(in_tmp):
    with pytest.raises(UsageError, match="no study database studies/cells.db"):
        storage.find_storage("cells")
    assert list(in_tmp.iterdir()) == []


def test_storage_files_are_the_database_or_journal_and_the_files_beside_it():
    assert storage.storage_files("sqlite:///s/c.db") == [Path(f"s/c.db{x}") for x in ("", "-journal", "-wal", "-shm")]
    assert storage.storage_files("journal:///s/c.log") == [Path("s/c.log"), Path("s/c.log.flock")]
    assert storage.storage_files("postgresql://u@h/db") == []
