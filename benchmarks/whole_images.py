"""Whole images counted by ``search.predict`` against the export's tile counts added up, on the same study.

    python benchmarks/whole_images.py --study-name gain-s0 --write

The dsb2018-fluo test images (``full/test``) are the source images of the embedded test tiles.
Counts each image whole with ``python -m search.predict`` (the study's default models), and adds up
the counts ``python -m search.export`` writes for the image's tiles (what a user of the tile export
has to do; the tiles overlap, so a cell in an overlap is counted once per tile). Both are scored
against the images' true counts, per image, with standard errors over images, and the paired
difference. Also prints predict's throughput (megapixels of images per second of the command).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from common import interval_coverage, load_test_groups, machine, write_section  # noqa: E402

import data  # noqa: E402
from data.folders import image_files  # noqa: E402
from data.images import read_gray  # noqa: E402
from search.results import stats  # noqa: E402

FULL_TEST = ROOT.parent / "shared" / "datasets" / "dsb2018-fluo" / "full" / "test"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/whole_images.py", description=__doc__.splitlines()[0])
    p.add_argument("--study-name", default="gain-s0", help="a study on the embedded data (default: %(default)s)")
    p.add_argument("--images", type=Path, default=FULL_TEST / "images", help="the whole test images")
    p.add_argument("--truth", type=Path, default=FULL_TEST / "counts.csv", help="their true counts, image,count")
    p.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    p.add_argument("--section", default="whole", help="BENCHMARKS.md section to write (default: %(default)s)")
    return p.parse_args(argv)


def interval_lines(whole: pd.DataFrame, true: np.ndarray) -> list[str]:
    """Coverage and mean width of predict's intervals, overall and by tercile of the true count."""
    if "low" not in whole:
        return ["No intervals (the study's export gives none)."]
    c = interval_coverage(whole["low"].to_numpy(), whole["high"].to_numpy(), true)
    parts = [f"{cov:.0%} (width {w:.1f}, true {lo:.0f}-{hi:.0f})" for cov, w, lo, hi in c["terciles"]]
    return [
        f"Intervals (predict's default level): cover {c['all'][0]:.1%} of {len(true)} images, mean width "
        f"{c['all'][1]:.1f}; by tercile of the true count {', '.join(parts)}."
    ]


def run(cmd: list[str]) -> float:
    """Run a command of the project; its wall seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", *cmd], check=True)
    return time.perf_counter() - started


def main(argv=None) -> int:
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    truth = pd.read_csv(args.truth).set_index("image")["count"]
    with tempfile.TemporaryDirectory() as tmp:
        counts_csv, tiles_csv = Path(tmp) / "counts.csv", Path(tmp) / "tiles.csv"
        predict_s = run(["search.predict", str(args.images), "--study-name", args.study_name, "--out", str(counts_csv)])
        run(["search.export", "--study-name", args.study_name, "--out", str(tiles_csv)])
        whole = pd.read_csv(counts_csv)
        tiles = pd.read_csv(tiles_csv)["count"].to_numpy()
    # The embedded test tiles' groups are rows of the images' counts CSV.
    groups = load_test_groups(data.DEFAULT_TEST_TRUTH, len(tiles))
    summed = pd.Series(np.bincount(groups, weights=tiles), index=truth.index[: groups.max() + 1])
    names = [Path(n).stem for n in whole["image"]]
    true = truth.loc[names].to_numpy()
    errors = {"predict": whole["count"].to_numpy() - true, "tiles added up": summed.loc[names].to_numpy() - true}
    images = np.arange(len(names))
    megapixels = sum(read_gray(f).size for f in image_files(args.images).values()) / 1e6
    m = machine()
    lines = [
        "## Whole images: `search.predict` against the export's tile counts added up",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/whole_images.py', *argv])}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, ISA {', '.join(m['isa'])}; torch {m['torch']}.  ",
        f"Study `{args.study_name}`'s default models; {len(names)} images of `{args.images}` "
        f"({megapixels:.2f} megapixels), true counts `{args.truth}` (mean {true.mean():.1f}).",
        "",
        "| counted by | MAE per image | bias |",
        "|---|---|---|",
    ]
    for label, e in errors.items():
        se = np.abs(e).std(ddof=1) / np.sqrt(len(e))
        lines.append(f"| {label} | **{np.abs(e).mean():.2f}** +- {se:.2f} | {e.mean():+.2f} |")
    d = stats.compare(errors["predict"], errors["tiles added up"], images)
    interval = (
        f"no interval: {d.too_few}" if d.too_few else f"+- {d.se:.2f} (95% interval {d.low:+.2f} to {d.high:+.2f})"
    )
    lines += [
        "",
        f"Predict minus tiles added up, paired over images: {d.diff:+.2f} {interval}.  ",
        f"Predict: {predict_s:.1f} s for the command, model loading included: "
        f"{megapixels / predict_s:.2f} megapixels per second.  ",
        *interval_lines(whole, true),
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(args.section, text)
    print(json.dumps({k: np.abs(e).mean() for k, e in errors.items()} | {"predict_s": predict_s}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
