"""A small real data set trained from dots, end to end: import, the default study, predict whole images.

    flock /tmp/cpu.lock python benchmarks/mbm_dots.py --splits 0 1 2 --parallel --write

For each split of ``splits.json`` (the literature's protocol: 15 images to train on, the other 29
to test), links the split's training images and their dots images into a folder, imports them
with ``python -m data.importer IMAGES --dots IMAGES``, runs the default ``python -m
search.study`` on them (study ``mbm-s<split>``; reused if it exists), then counts the 29 test
images whole with ``python -m search.predict`` and scores them against their dots. Prints, per
split, the study's wall time, seconds per epoch, trials and verdict, and the per-image test MAE
with its standard error over images; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from common import image_se, machine, run_commands, write_section  # noqa: E402

from search.errors import UsageError  # noqa: E402
from search.results.verdict import stage_verdict_line  # noqa: E402
from search.runtime.storage import find_storage, load_existing_study  # noqa: E402
from search.stages import finalists  # noqa: E402

STATES = optuna.trial.TrialState
DEFAULT_SET = ROOT.parent / "shared" / "datasets" / "mbm-dots"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/mbm_dots.py", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=DEFAULT_SET, help="the mbm-dots folder (default: %(default)s)")
    p.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2], help="splits.json entries (default: 0 1 2)")
    p.add_argument("--work", type=Path, default=Path("studies/mbm-data"), help="where the split folders go")
    p.add_argument("--scale", type=float, help="the importer's --scale for the training images (default: its own)")
    p.add_argument("--timeout", type=float, help="the study command's --timeout (default: its profile's)")
    p.add_argument("--parallel", action="store_true", help="run the studies at once, the cores split between them")
    p.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    p.add_argument("--section", default="mbm", help="BENCHMARKS.md section to write (default: %(default)s)")
    return p.parse_args(argv)


def link_split(dataset: Path, names: list[str], folder: Path, dots: bool) -> None:
    """Link each image of ``names`` (and, if asked, its ``_dots_`` image) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        stem, number = name[: -len(".png")].rsplit("_", 1)
        for file in (name, f"{stem}_dots_{number}.png")[: 1 + dots]:
            target = folder / file
            if not target.exists():
                target.symlink_to((dataset / "images" / file).resolve())


def prepare(dataset: Path, split: dict, folder: Path, scale: float | None) -> Path:
    """The split's training npz (imported once from images and dots) and its folder of test images."""
    link_split(dataset, split["train"], folder / "train", dots=True)
    link_split(dataset, split["test"], folder / "test", dots=False)
    train = folder / "train.npz"
    if not train.exists():
        cmd = [sys.executable, "-m", "data.importer", str(folder / "train"), "--dots", str(folder / "train")]
        cmd += ["--scale", str(scale)] if scale else []
        subprocess.run([*cmd, "--out", str(train)], check=True)
    return train


def study_command(name: str, train: Path, timeout: float | None) -> list[str]:
    cmd = [sys.executable, "-m", "search.study", "--study-name", name, "--train", str(train)]
    return cmd + (["--timeout", str(timeout)] if timeout else [])


def predict(name: str, folder: Path) -> tuple[pd.DataFrame, float]:
    """Whole-image counts of the split's test images by the study's default models, and the seconds taken."""
    out = folder / f"{name}-counts.csv"
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "search.predict", str(folder / "test"), "--study-name", name, "--out", str(out)]
    subprocess.run(cmd, check=True)
    return pd.read_csv(out), time.perf_counter() - started


def measure(name: str, index: int, wall: float | None, dataset: Path, folder: Path) -> dict:
    """Score one split's study: its whole-image counts against the dots of its test images."""
    study = load_existing_study(name, find_storage(name))
    trials = study.get_trials(deepcopy=False)
    counts, seconds = predict(name, folder)
    truth = pd.read_csv(dataset / "counts.csv").set_index("image")["count"]
    names = [Path(n).name for n in counts["image"]]
    errors = counts["count"].to_numpy() - truth.loc[names].to_numpy()
    staged = finalists.results(study)
    return {
        "split": index,
        "study": name,
        "wall_s": None if wall is None else round(wall),
        "epoch_s": finalists.epoch_seconds([t for t in trials if t.state == STATES.COMPLETE]),
        "complete": sum(t.state == STATES.COMPLETE for t in trials),
        "pruned": sum(t.state == STATES.PRUNED for t in trials),
        "best_params": study.best_trial.params,
        "verdict": stage_verdict_line(staged) if staged else None,
        "n_test": len(errors),
        "mean_true": float(truth.loc[names].mean()),
        "mae": float(np.abs(errors).mean()),
        "se": image_se(errors),
        "bias": float(errors.mean()),
        "predict_s": round(seconds, 1),
    }


def report(args, rows: list[dict], threads) -> str:
    m = machine()
    maes = [r["mae"] for r in rows]
    how = f"at the same time, {threads} torch thread(s) each" if threads else "one after another"
    lines = [
        "## Your own dots, end to end: mbm-dots, the literature's 15/29 protocol",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/mbm_dots.py', *args.argv])}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, ISA {', '.join(m['isa'])}; torch {m['torch']}; studies run {how}.  ",
        "Per split: import the 15 training images with their dots, run the default study, count the 29 test "
        "images whole with `search.predict` (the study's default models); MAE per image +- its standard "
        "error over the 29 images.",
        "",
        "| split | study wall s | s per epoch | search trials (complete / pruned) | test MAE per image | bias | "
        "mean true count |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        wall = "existed" if r["wall_s"] is None else str(r["wall_s"])
        epoch = "n/a" if r["epoch_s"] is None else f"{r['epoch_s']:.1f}"
        lines.append(
            f"| {r['split']} | {wall} | {epoch} | {r['complete']} / {r['pruned']} | **{r['mae']:.2f}** +- "
            f"{r['se']:.2f} | {r['bias']:+.2f} | {r['mean_true']:.1f} |"
        )
    lines += ["", f"Mean over {len(rows)} splits: **{np.mean(maes):.2f}** (sd {np.std(maes, ddof=1):.2f}).", ""]
    if len(rows) < 2:
        lines[-2] = f"One split: **{maes[0]:.2f}**."
    for r in rows:
        lines.append(f"Split {r['split']}: best {r['best_params']}; verdict out of fold: {r['verdict']}.  ")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    splits = json.loads((args.dataset / "splits.json").read_text())
    # One folder per scale: a training file imported at another scale is never reused.
    scale = "auto" if args.scale is None else f"{args.scale:g}"
    folders = {i: args.work / f"split-{i}-scale-{scale}" for i in args.splits}
    trains = {i: prepare(args.dataset, splits[i], folders[i], args.scale) for i in args.splits}
    todo = {}
    for i in args.splits:
        try:
            find_storage(f"mbm-s{i}")
        except UsageError:
            todo[f"mbm-s{i}"] = study_command(f"mbm-s{i}", trains[i], args.timeout)
    walls, threads = run_commands(todo, args.parallel) if todo else ({}, 0)
    rows = [measure(f"mbm-s{i}", i, walls.get(f"mbm-s{i}"), args.dataset, folders[i]) for i in args.splits]
    text = report(args, rows, threads)
    print(text)
    if args.write:
        write_section(args.section, text)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
