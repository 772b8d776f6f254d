"""Open a study's storage: SQLite, a journal file or a database server, with liveness checks.

Storage URLs (``--storage``):

- ``sqlite:///studies/cells.db``: the single-process default; SQLite locks under several
  writing processes, so ``--workers`` above 1 refuses it.
- ``journal:///studies/cells.journal.log`` (relative; ``journal:////abs/path`` absolute) or a
  plain path ending in ``.log``: Optuna's journal file, the default for ``--workers`` above 1
  on one machine. optuna-dashboard opens the plain path.
- ``postgresql://user:password@host/db`` (or any SQLAlchemy URL): several machines.

Database storages record a heartbeat for each running trial; a trial whose worker died (no
heartbeat for twice the interval) is failed and queued again. Optuna 5.0's journal storage has
no heartbeat, so a trial whose worker process on this machine is gone is failed and queued
again by the next worker that looks (``search.runtime.dead_workers.reap_dead_local_trials``), and the
journal's lock is an flock (``FlockLock``) that a killed worker cannot leave behind.
"""

from __future__ import annotations

import copy
import fcntl
import os
import re
import socket
import threading
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from search.errors import UsageError

JOURNAL_SCHEME = "journal:///"
MAX_RETRY = 2  # a trial whose worker died is run again at most this often
CONNECT_TIMEOUT = 10  # seconds: an unreachable server fails fast instead of hanging
WORKER_ATTR = "worker"  # trial user attr "host:pid" of the process running it
# The storage URL of --workers children: in their environment, not on their command line,
# where ps would show its password to every user of the machine.
STORAGE_ENV = "CELLCOUNT_STORAGE"
# Study names become file and folder names under studies/: nothing that could leave it.
STUDY_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# What a database says when another process creates the same new storage's tables at the same
# moment: the loser's retry finds them made.
CREATED_MEANWHILE = re.compile(r"already exists|UNIQUE constraint failed|duplicate key|database is locked")
CREATE_TRIES = 10
CREATE_RETRY_SECONDS = 0.2


def check_study_name(name: str) -> str:
    """Return ``name``, or raise UsageError unless it is letters, digits, ``_``, ``-`` and ``.``."""
    if not STUDY_NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"--study-name {name!r}: use only letters, digits, '_', '-' and '.'")
    return name


def given_storage(storage: str | None) -> str | None:
    """The --storage option, else the URL in the environment (``CELLCOUNT_STORAGE``), else None."""
    return storage or os.environ.get(STORAGE_ENV) or None


def default_url(study_name: str, workers: int = 1) -> str:
    """SQLite for one process, a journal file for several (SQLite locks under concurrent writers)."""
    if workers > 1:
        return f"{JOURNAL_SCHEME}studies/{study_name}.journal.log"
    return f"sqlite:///studies/{study_name}.db"


def journal_path(url: str) -> str | None:
    """The journal file a storage URL names, or None for a database URL."""
    if url.startswith(JOURNAL_SCHEME):
        return url[len(JOURNAL_SCHEME) :]
    if url.endswith(".log") and "://" not in url:
        return url
    return None


def storage_file(url: str) -> Path | None:
    """The file of a SQLite or journal storage URL (relative to this folder unless absolute), else None."""
    path = journal_path(url)
    if path is None and is_sqlite(url):
        try:
            path = make_url(url).database
        except ArgumentError:
            return None
    return Path(path) if path and path != ":memory:" else None


def storage_files(url: str) -> list[Path]:
    """The files of a SQLite or journal storage: its database or journal, and the lock or journal files beside it."""
    file = storage_file(url)
    if file is None:
        return []
    beside = (".flock",) if journal_path(url) is not None else ("-journal", "-wal", "-shm")
    return [file, *(file.with_name(file.name + suffix) for suffix in beside)]


def safe_url(url: str) -> str:
    """The storage URL with any password hidden, for printing."""
    if journal_path(url) is not None:
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def dashboard_target(url: str) -> str:
    """What to give optuna-dashboard: the journal file itself, or the password-free URL."""
    return journal_path(url) or safe_url(url)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def open_storage(url: str, heartbeat: int | None = None) -> optuna.storages.BaseStorage:
    """Open (and create) the storage ``url`` names; raises UsageError on a bad or unreachable one.

    Parameters
    ----------
    url : str
        A storage URL as described in the module docstring.
    heartbeat : int, optional
        Seconds between heartbeats of a running trial on a database storage; a trial silent
        for twice as long is failed and retried up to ``MAX_RETRY`` times. None: no heartbeat.
    """
    path = journal_path(url)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            return JournalStorage(JournalFileBackend(path, lock_obj=FlockLock(path)))
        except OSError as exc:
            raise UsageError(f"cannot open journal {path}: {exc.strerror or exc}") from None
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(
            f"--storage {safe_url(url)!r} is not a storage URL (e.g. sqlite:///studies/cells.db, "
            "journal:///studies/cells.journal.log or postgresql://user@host/db)"
        ) from None
    kwargs = {}
    if parsed.get_backend_name() == "sqlite":
        Path(parsed.database or ".").parent.mkdir(parents=True, exist_ok=True)
    elif parsed.get_backend_name() in ("postgresql", "mysql"):
        kwargs["engine_kwargs"] = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    if parsed.drivername == "postgresql":
        # The driver the 'postgres' extra installs; SQLAlchemy 2.0 would pick psycopg2 by default.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if heartbeat:
        kwargs.update(
            heartbeat_interval=heartbeat,
            grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=RetryWithoutWorker(max_retry=MAX_RETRY),
        )
    try:
        with warnings.catch_warnings():
            # The heartbeat arguments are marked experimental; the notice is noise here.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return rdb_storage(parsed.render_as_string(hide_password=False), kwargs)
    except Exception as exc:  # driver missing, server unreachable, bad credentials, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot open storage {safe_url(url)}: {reason.replace(url, safe_url(url))}") from None


def rdb_storage(url: str, kwargs: dict) -> RDBStorage:
    """``RDBStorage(url, **kwargs)``, retried while another process creates the same new storage.

    Two processes that open a new SQLite file at once both find no tables and both create them;
    the slower one fails ("table studies already exists"). Its retry finds them made and joins.
    """
    for _ in range(CREATE_TRIES - 1):
        try:
            return RDBStorage(url, **kwargs)
        except DBAPIError as exc:
            if not CREATED_MEANWHILE.search(str(exc)):
                raise
            time.sleep(CREATE_RETRY_SECONDS)
    return RDBStorage(url, **kwargs)


class FlockLock:
    """The journal's write lock, held with flock(2) on ``<journal>.flock``.

    The kernel releases it when its process dies, even by SIGKILL; Optuna's default symlink lock
    would stay behind and block every other worker for its grace period.
    """

    def __init__(self, journal: str):
        self.path = journal + ".flock"
        self._threads = threading.Lock()  # flock excludes processes; this excludes threads
        self._fd = None

    def acquire(self) -> bool:
        self._threads.acquire()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        self._threads.release()


def worker_id() -> str:
    """``host:pid`` of this process, recorded on every trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RetryWithoutWorker(RetryHeartbeatStaleTrialCallback):
    """Queue a dead worker's trial again, without its ``worker`` attribute or why it failed.

    Optuna's callback copies every user attribute; a copied ``worker`` would name the dead
    process until the retry's own worker overwrites it, and another worker's reaper could fail
    the retry it has just started in between.
    """

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trial = copy.deepcopy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in (WORKER_ATTR, "fail_reason")}
        super().__call__(study, trial)


def find_storage(study_name: str) -> str:
    """The default storage a study run would have used: its SQLite file, else its journal file."""
    for workers in (1, 2):
        url = default_url(study_name, workers)
        if Path(journal_path(url) or url.removeprefix("sqlite:///")).is_file():
            return url
    raise UsageError(
        f"no study database studies/{study_name}.db or studies/{study_name}.journal.log here: "
        "run python -m search.study first, or give --storage"
    )


def load_existing_study(study_name: str, storage_url: str) -> optuna.Study:
    """Load a study that must exist, creating nothing; raises UsageError naming the storage otherwise.

    A SQLite or journal file that is not there is refused before it is opened: opening it would
    create it, and a mistyped ``--storage`` would leave an empty database behind.
    """
    file = storage_file(storage_url)
    if file is not None and not file.is_file():
        raise UsageError(f"storage {safe_url(storage_url)}: no file {file} (check the path; nothing was created)")
    try:
        return optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    except KeyError:
        raise UsageError(f"no study {study_name!r} in {safe_url(storage_url)}") from None
