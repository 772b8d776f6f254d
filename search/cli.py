"""What the three commands (study, export, report) share: their study options and error handling.

Every bad input ends as one line on stderr and exit code 2; a finished result is never lost.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import data
from model.train import pick_device
from search.errors import UsageError
from search.storage import STORAGE_ENV

STORAGE_HELP = (
    "sqlite:///FILE.db, journal:///FILE.log (or FILE.log) or a database URL such as "
    f"postgresql://user:password@host/db (default: ${STORAGE_ENV}, else {{default}})"
)


def parser(prog: str, description: str, default_storage: str, device: bool = True) -> argparse.ArgumentParser:
    """An argument parser with ``--study-name``, ``--storage`` and, if asked, ``--device``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--study-name", default="cells", help="study name: letters, digits, '_', '-' and '.' (default: %(default)s)"
    )
    p.add_argument("--storage", help=STORAGE_HELP.format(default=default_storage))
    if device:
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    return p


def resolve_device(name: str):
    """The torch device ``--device`` names; UsageError for one that is unknown or absent."""
    try:
        return pick_device(name)
    except ValueError as exc:
        raise UsageError(f"--device: {exc}") from None


class Failed(Exception):
    """Work that started failed (not the user's input): one line on stderr, exit code 1."""


def run_command(work: Callable[[], object], interrupted: str = "interrupted") -> int:
    """Run ``work``; bad input is one line and exit 2, a failure exit 1, Ctrl-C exit 130."""
    try:
        work()
    except (UsageError, data.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return 130
    return 0
