"""Helpers shared by the benchmark scripts: the machine they ran on, BENCHMARKS.md sections, test-tile groups."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

import data

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\nMeasured results of the scripts in `benchmarks/`; each section names its command and machine.\n"
)


def write_section(name: str, body: str, path: Path = BENCH) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` (append if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else HEADER
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def shown(path: Path) -> str:
    """``path`` as the section shows it: relative to the checkout when inside it, so no machine's folders."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def machine() -> dict:
    """CPU model, cores, vector extensions and library versions of this machine, as measured now."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if re.search(rf"\b{f}\b", cpuinfo)]
    return {
        "cpu": m.group(1).strip() if m else platform.processor(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "isa": isa,
    }


def load_test_groups(path: Path, n: int) -> np.ndarray:
    """The source image of each of ``n`` test tiles, from the npz at ``path``: the unit of every test SE."""
    groups = data.load_tile_ints(path, "groups", n)
    if groups is None:
        raise SystemExit(f"{path} has no 'groups' array: the test images cannot be resampled")
    return groups


def run_commands(commands: dict[str, list[str]], parallel: bool) -> tuple[dict[str, float], int | None]:
    """Run each named command; returns their wall seconds and the torch threads each had.

    With ``parallel`` they run at once, the CPU cores split between them (``OMP_NUM_THREADS``),
    each printing into ``studies/<name>.log``; otherwise one after another on all cores (threads
    None). A command that fails ends the benchmark.
    """
    threads = max(1, (os.cpu_count() or 1) // len(commands)) if parallel else None
    env = {**os.environ, "PYTHONPATH": str(ROOT)} | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
    walls, started, procs = {}, {}, {}
    for name, cmd in commands.items():
        started[name] = time.perf_counter()
        if not parallel:
            subprocess.run(cmd, check=True, env=env)
            walls[name] = time.perf_counter() - started[name]
            continue
        log = Path("studies") / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        procs[name] = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    for name, proc in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"{name} failed: see studies/{name}.log")
        walls[name] = time.perf_counter() - started[name]
    return walls, threads


def image_se(errors: np.ndarray) -> float:
    """Standard error of the mean absolute error over images (each image one draw)."""
    return float(np.abs(errors).std(ddof=1) / np.sqrt(len(errors)))


def interval_coverage(low: np.ndarray, high: np.ndarray, true: np.ndarray) -> dict:
    """How often intervals hold the true counts, and their mean width, overall and by tercile of the true count.

    Returns ``{"all": (coverage, width), "terciles": [(coverage, width, lowest, highest true count), ...]}``;
    a tercile that no item falls in (a few items of equal counts) is left out.
    """
    low, high, true = np.asarray(low), np.asarray(high), np.asarray(true)
    inside, width = (low <= true) & (true <= high), high - low
    tercile = np.searchsorted(np.quantile(true, [1 / 3, 2 / 3]), true, side="right")
    terciles = [
        (float(inside[t].mean()), float(width[t].mean()), float(true[t].min()), float(true[t].max()))
        for t in (tercile == k for k in range(3))
        if t.any()
    ]
    return {"all": (float(inside.mean()), float(width.mean())), "terciles": terciles}
