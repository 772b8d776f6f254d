"""Benchmark: trials per hour of one study with 1 and with 2 worker processes on this machine.

    flock /tmp/cpu.lock python benchmarks/workers.py --minutes 8 --write

Each run is a fresh quick-profile study on the embedded data (``python -m search.study --workers N
--timeout``) in a temporary folder. Trials per hour counts the trials that finished on their own
(complete or pruned, not those stopped by the timeout) over the run's wall time. ``--write`` puts
the table into BENCHMARKS.md between the ``workers`` markers.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import machine, write_section  # noqa: E402  (benchmarks/ is sys.path[0])

from search.runtime.storage import default_url, open_storage  # noqa: E402

STATES = optuna.trial.TrialState


def run_study(workers: int, seconds: float, seed: int) -> dict:
    """Run one timed study with ``workers`` processes; returns its counts and rate."""
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "search.study",
            "--study-name",
            "bench",
            "--workers",
            str(workers),
            "--profile",
            "quick",
            "--timeout",
            str(seconds),
            "--n-trials",
            "10000",
            "--seed",
            str(seed),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        started = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        cwd = os.getcwd()
        os.chdir(tmp)  # the default storage URLs are relative to the study's folder
        try:
            trials = optuna.load_study(study_name="bench", storage=open_storage(default_url("bench", workers))).trials
        finally:
            os.chdir(cwd)
    own = [t for t in trials if t.state in (STATES.COMPLETE, STATES.PRUNED) and not t.user_attrs.get("stopped")]
    complete = [t for t in trials if t.state == STATES.COMPLETE]
    return {
        "workers": workers,
        "wall_s": wall,
        "finished": len(own),
        "complete": len(complete),
        "pruned": sum(t.state == STATES.PRUNED for t in own),
        "stopped": sum(bool(t.user_attrs.get("stopped")) for t in trials),
        "failed": sum(t.state == STATES.FAIL for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "per_hour": len(own) / wall * 3600,
        "best": min((t.value for t in complete), default=float("nan")),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| workers | wall s | finished trials (complete + pruned) | stopped at timeout | failed "
        "| epochs trained | trials / hour | epochs / hour | best val MAE |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['wall_s']:.0f} | {r['finished']} ({r['complete']} + {r['pruned']}) "
            f"| {r['stopped']} | {r['failed']} | {r['epochs']} | {r['per_hour']:.1f} "
            f"| {r['epochs'] / r['wall_s'] * 3600:.0f} | {r['best']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=8, help="--timeout of each study (default: %(default)s)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default: 1 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = p.parse_args(argv)
    command = "python benchmarks/workers.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    rows = []
    for n in args.workers:
        rows.append(run_study(n, args.minutes * 60, args.seed))
        print(table(rows[-1:]), flush=True)
    m = machine()
    body = "\n".join(
        [
            "## Parallel workers: trials per hour",
            "",
            f"`{command}` (under `flock /tmp/cpu.lock`); {m['cpu']}, {m['cores']} cores, torch {m['torch']}. "
            f"Quick profile, embedded data, seed {args.seed}, one fresh study per row, {args.minutes:g} min each. "
            "One worker uses every core's thread; N workers get cores // N threads each. Trials per hour "
            "counts trials that ended on their own; the workers sample different configurations (their "
            "samplers are seeded apart), so the trial mix, and with it the rate, differs between rows.",
            "",
            table(rows),
        ]
    )
    print(body)
    if args.write:
        write_section("workers", body)
        print("written to BENCHMARKS.md")


if __name__ == "__main__":
    main()
