"""Crowded dots, end to end: a synthetic set of overlapping cells, the default study, whole-image counts.

    python benchmarks/crowded_dots.py --seeds 0 --write

Makes a set like the counting literature's synthetic fluorescence cells (Lempitsky and
Zisserman's VGG cells): 256x256 grey images of 150-250 blurred cells 7-10 px across, placed in
clumps so that many overlap, with a dot at every centre; 32 training images and 100 test images,
drawn from their own seeds. Imports the training images with their dots (``data.importer
--dots-csv``, scale 1), prints how crowded the dots are and what the study's crowding rule chose,
runs the default ``python -m search.study`` (study ``crowded-s<seed>``; reused if it exists), and
counts the test images whole with ``python -m search.predict``: the default export, the
reference alone (disks) and the warm start alone (``--trial 1``). Prints each one's per-image MAE
with its standard error over images; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from common import image_se, machine, run_commands, write_section  # noqa: E402

import data  # noqa: E402
from search import space  # noqa: E402
from search.errors import UsageError  # noqa: E402
from search.runtime.storage import find_storage, load_existing_study  # noqa: E402
from search.stages import finalists  # noqa: E402

STATES = optuna.trial.TrialState
SIZE = 256


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/crowded_dots.py", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="study seeds (default: 0)")
    p.add_argument("--work", type=Path, default=Path("studies/crowded-data"), help="where the images go")
    p.add_argument("--train-images", type=int, default=32, help="training images (default: 32)")
    p.add_argument("--test-images", type=int, default=100, help="test images (default: 100)")
    p.add_argument("--timeout", type=float, help="the study command's --timeout (default: none, the whole job)")
    p.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    return p.parse_args(argv)


def crowded_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One 256x256 uint8 image of clumped, overlapping cells and its (K, 2) cell centres (row, col)."""
    n = int(rng.integers(150, 251))
    clumps = rng.uniform(0, SIZE, size=(max(1, n // 6), 2))
    # Each cell near a clump's centre (about 12 px): clumps of touching and overlapping cells.
    centres = clumps[rng.integers(0, len(clumps), n)] + rng.normal(0, 12, size=(n, 2))
    centres = centres[((centres >= 0) & (centres <= SIZE - 1)).all(axis=1)]
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    image = np.zeros((SIZE, SIZE), np.float32)
    for (r, c), sigma, bright in zip(centres, rng.uniform(1.8, 2.6, len(centres)), rng.uniform(0.5, 1.0, len(centres))):
        lo_r, hi_r, lo_c, hi_c = (max(0, int(v)) for v in (r - 10, r + 11, c - 10, c + 11))
        patch = (yy[lo_r:hi_r, lo_c:hi_c] - r) ** 2 + (xx[lo_r:hi_r, lo_c:hi_c] - c) ** 2
        image[lo_r:hi_r, lo_c:hi_c] += bright * np.exp(-patch / (2 * sigma**2))
    image = cv2.GaussianBlur(image, (0, 0), 0.8) + 0.05 + rng.normal(0, 0.03, image.shape).astype(np.float32)
    return np.clip(image / 1.6 * 255, 0, 255).astype(np.uint8), centres


def write_set(folder: Path, n: int, seed: int) -> pd.DataFrame:
    """Write ``n`` images to ``folder``; returns their dots as rows ``image,row,col``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, rows = np.random.default_rng(seed), []
    for i in range(n):
        image, centres = crowded_image(rng)
        name = f"cells{i:03d}.png"
        cv2.imwrite(str(folder / name), image)
        rows += [(name, round(float(r), 2), round(float(c), 2)) for r, c in centres]
    return pd.DataFrame(rows, columns=["image", "row", "col"])


def prepare(work: Path, n_train: int, n_test: int) -> tuple[Path, Path, Path]:
    """The training npz (imported once), the test image folder and its true counts CSV."""
    train, test = work / "train.npz", work / "test"
    truth = work / "test_counts.csv"
    if not train.exists():
        dots = write_set(work / "train", n_train, seed=1000)
        dots.to_csv(work / "train_dots.csv", index=False)
        counts = write_set(test, n_test, seed=2000).groupby("image").size().rename("count")
        counts.reset_index().to_csv(truth, index=False)
        cmd = [sys.executable, "-m", "data.importer", str(work / "train"), "--dots-csv", str(work / "train_dots.csv")]
        subprocess.run([*cmd, "--scale", "1", "--out", str(train)], check=True)
    return train, test, truth


def predict(name: str, test: Path, truth: Path, which: list[str]) -> dict:
    """Per-image MAE, its standard error over images and the bias of ``search.predict`` with ``which``."""
    out = test.parent / f"{name}{'-'.join(['', *which]).replace('--', '-')}.csv"
    cmd = [sys.executable, "-m", "search.predict", str(test), "--study-name", name, "--out", str(out), *which]
    subprocess.run([*cmd, "--truth", str(truth), "--interval", "0"], check=True)
    counts = pd.read_csv(out)
    true = pd.read_csv(truth).set_index("image")["count"].loc[counts["image"]].to_numpy()
    errors = counts["count"].to_numpy() - true
    return {
        "mae": float(np.abs(errors).mean()),
        "se": image_se(errors),
        "bias": float(errors.mean()),
        "mean_true": true.mean(),
    }


def run_study(name: str, train: Path, seed: int, timeout: float | None) -> float | None:
    """Run the default study unless it exists; returns its wall seconds (None: it existed)."""
    try:
        find_storage(name)
        return None
    except UsageError:  # no study of that name yet: run it
        pass
    cmd = [sys.executable, "-m", "search.study", "--study-name", name, "--train", str(train), "--seed", str(seed)]
    walls, _ = run_commands({name: cmd + (["--timeout", str(timeout)] if timeout else [])}, parallel=False)
    return walls[name]


def measure(name: str, seed: int, wall, test: Path, truth: Path) -> dict:
    study = load_existing_study(name, find_storage(name))
    trials = study.get_trials(deepcopy=False)
    warm = next(t for t in trials if t.user_attrs.get("warm_start") and t.state == STATES.COMPLETE)
    base = next(t for t in trials if t.user_attrs.get("baseline") and t.state == STATES.COMPLETE)
    return {
        "seed": seed,
        "wall_s": None if wall is None else round(wall),
        "epoch_s": finalists.epoch_seconds([t for t in trials if t.state == STATES.COMPLETE]),
        "complete": sum(t.state == STATES.COMPLETE for t in trials),
        "warm_start": space.target_text(warm.params),
        "default": predict(name, test, truth, []),
        "reference": predict(name, test, truth, ["--trial", str(base.number)]),
        "warm": predict(name, test, truth, ["--trial", str(warm.number)]),
    }


def report(args, share: float, n_dots: int, rows: list[dict]) -> str:
    m = machine()
    lines = [
        "## Crowded dots: a synthetic set of overlapping cells",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/crowded_dots.py', *args.argv])}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, ISA {', '.join(m['isa'])}; torch {m['torch']}.  ",
        f"Data: {args.train_images} training images ({n_dots} dots) and {args.test_images} test images, 256x256, "
        f"150-250 clumped cells each. Crowding of the training dots: {share:.1%} have a neighbour closer than "
        f"{space.merge_distance()} px (the rule's threshold: {space.CROWDED_SHARE:.0%}).",
        "",
        "| study seed | wall s | s per epoch | complete trials | warm start trains | default export | "
        "reference alone (disks) | warm start alone |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            f"{r[k]['mae']:.2f} +- {r[k]['se']:.2f} (bias {r[k]['bias']:+.2f})"
            for k in ("default", "reference", "warm")
        ]
        epoch = "n/a" if r["epoch_s"] is None else f"{r['epoch_s']:.1f}"
        lines.append(
            f"| {r['seed']} | {r['wall_s'] or 'existed'} | {epoch} | {r['complete']} | {r['warm_start']} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append("")
    lines.append(f"Per-image MAE +- its standard error over the {args.test_images} test images, counted whole.")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train, test, truth = prepare(args.work, args.train_images, args.test_images)
    tiles = np.load(train)["X"].shape
    points = data.load_points(train, tiles[0], tiles[1:])
    share = data.crowding(points, space.merge_distance())
    rows = []
    for seed in args.seeds:
        name = f"crowded-s{seed}"
        wall = run_study(name, train, seed, args.timeout)
        rows.append(measure(name, seed, wall, test, truth))
    text = report(args, share, len(points), rows)
    print(text)
    if args.write:
        write_section("crowded", text)
    print(json.dumps({"crowding": share, "rows": rows}, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
