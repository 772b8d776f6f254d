"""What a user submits, scored on images no part of the study saw: the default study, end to end.

    flock /tmp/cpu.lock python benchmarks/search_gain.py --study-seeds 0 1 --write
    flock /tmp/cpu.lock python benchmarks/search_gain.py --study-seeds 0 1 --timeout 3600 --prefix long-s --write
    python benchmarks/search_gain.py --study-seeds 0 --test other.npz --truth other.csv --groups other_truth.npz

For each study seed, runs ``python -m search.study --study-name gain-s<seed> --seed <seed>`` with
its defaults (search and finalist stage in one budget; ``--timeout`` passes another budget),
timing the whole command, unless that study already exists (its SQLite or journal file). Then
exports, exactly as ``python -m search.export`` does, and scores on the held-out test tiles, each
with a standard error over test images (bootstrap over the ``groups`` of the test tiles):

- the default export (the finalist with the lowest out-of-fold MAE: its search and fold models),
- the best search trial's model alone (``--trial``),
- the reference's models and the warm start's (``--finalist`` when it was a finalist, else
  ``--trial``, its search model alone).

Nothing is trained here but by the study command, which checks its data file's fingerprint on
resume. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from common import interval_coverage, load_test_groups, machine, run_commands, shown, write_section  # noqa: E402

import data  # noqa: E402
from search import export  # noqa: E402
from search.errors import UsageError  # noqa: E402
from search.results import stats  # noqa: E402
from search.results.verdict import gain_line, stage_verdict, stage_verdict_line  # noqa: E402
from search.roles import baseline_trial  # noqa: E402
from search.runtime.storage import find_storage, load_existing_study  # noqa: E402
from search.stages import finalists  # noqa: E402

STATES = optuna.trial.TrialState


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/search_gain.py", description=__doc__.splitlines()[0])
    p.add_argument("--study-seeds", type=int, nargs="+", default=[0, 1], help="one study per seed (default: 0 1)")
    p.add_argument("--prefix", default="gain-s", help="study names: PREFIX<seed> (default: %(default)s)")
    p.add_argument("--train", type=Path, help="the studies' training npz (default: the study command's, embedded)")
    p.add_argument("--test", type=Path, default=data.DEFAULT_TEST, help="held-out images (default: embedded)")
    p.add_argument("--truth", type=Path, default=data.DEFAULT_TEST_COUNTS, help="their true counts CSV")
    p.add_argument(
        "--groups", type=Path, default=data.DEFAULT_TEST_TRUTH, help="npz with the test tiles' source images 'groups'"
    )
    p.add_argument("--timeout", type=float, help="the study command's --timeout (default: its profile's)")
    p.add_argument(
        "--parallel",
        action="store_true",
        help="run the studies at the same time, the CPU cores split between them (one each on 2 cores)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    p.add_argument("--section", default="gain", help="BENCHMARKS.md section to write (default: %(default)s)")
    p.add_argument(
        "--against",
        type=Path,
        help="the last line (JSON) of an earlier run of this script: each study's default export paired with "
        "that run's of the same seed (before and after a change, on the same test tiles)",
    )
    return p.parse_args(argv)


def study_command(name: str, seed: int, train: Path | None, timeout: float | None) -> list[str]:
    """The default study command for one study seed."""
    cmd = [sys.executable, "-m", "search.study", "--study-name", name, "--seed", str(seed)]
    cmd += ["--train", str(train)] if train else []
    return cmd + (["--timeout", str(timeout)] if timeout else [])


def run_studies(names: list[str], seeds: list[int], args) -> dict[str, float | None]:
    """Run each study's default command unless the study exists; its wall seconds, or None if it existed."""
    todo = {}
    for name, seed in zip(names, seeds):
        try:
            find_storage(name)
        except UsageError:
            todo[name] = study_command(name, seed, args.train, args.timeout)
    walls, args.threads = run_commands(todo, args.parallel) if todo else ({}, 0)
    return {name: walls.get(name) for name in names}


def scored_export(name: str, options: list[str], args, truth: np.ndarray, groups: np.ndarray) -> dict | None:
    """Run ``search.export`` with ``options``; its test MAE, the image-bootstrap SE and its log, or None."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sub.csv"
        argv = ["--study-name", name, "--test", str(args.test), "--truth", str(args.truth), "--out", str(out)]
        argv += ["--device", args.device, "--intervals", *options]
        if export.main(argv) != 0:
            return None
        counts = pd.read_csv(out)["count"].to_numpy()
        log = json.loads(out.with_suffix(".json").read_text())
    errors = counts - truth
    return {
        "mae": float(np.abs(errors).mean()),
        "se": stats.mae_se(errors, groups),
        "bias": float(errors.mean()),
        "exported": log["exported"],
        "val": log["mae"],
        "val_kind": log["score"],
        "members_alone": log["member_test_mae"],
        "member_counts": log["member_test_counts"],
        "finalists": [m["finalist"] for m in log["members"]],
        "weights": log.get("blend", {}).get("weights"),
        "coverage": coverage(log, truth),
        "errors": errors.tolist(),
    }


def coverage(log: dict, truth: np.ndarray) -> dict | None:
    """The logged intervals' coverage and mean width on the test tiles, overall and by tercile of the true count."""
    if "low" not in log:
        return None
    return {"level": log["interval"], **interval_coverage(log["low"], log["high"], truth)}


def equal_weights(parts: list[dict | None], truth: np.ndarray, groups: np.ndarray) -> dict | None:
    """The plain mean of finalists' exports ``parts`` (each its models' mean count), rounded, scored on test."""
    if any(r is None for r in parts):
        return None
    per_finalist = [np.mean(r["member_counts"], axis=0) for r in parts]
    errors = np.floor(np.mean(per_finalist, axis=0) + 0.5) - truth
    return {"mae": float(np.abs(errors).mean()), "se": stats.mae_se(errors, groups), "errors": errors.tolist()}


def paired(a: dict | None, b: dict | None, groups: np.ndarray) -> stats.Comparison | None:
    """Test MAE of export a minus export b, tile by tile, with its standard error over test images."""
    if a is None or b is None:
        return None
    return stats.compare(np.array(a["errors"]), np.array(b["errors"]), groups)


def models_of(study, trial, staged: list, name: str, args, truth, groups) -> dict | None:
    """The export of a configuration's finalist models, or of its search trial alone if it was no finalist."""
    if trial is None:
        return None
    as_finalist = any(f.trial == trial.number and f.runs for f in staged)
    options = ["--finalist" if as_finalist else "--trial", str(trial.number)]
    return scored_export(name, options, args, truth, groups)


def measure(name: str, seed: int, wall: float | None, args, truth: np.ndarray, groups: np.ndarray) -> dict:
    """Score one study's exports."""
    study = load_existing_study(name, find_storage(name))
    staged = finalists.results(study)
    base = baseline_trial(study)
    trials = study.get_trials(deepcopy=False)
    warm = next((t for t in trials if t.user_attrs.get("warm_start") and t.state == STATES.COMPLETE), None)
    if not any(t.state == STATES.COMPLETE for t in trials):
        raise SystemExit(f"study {name!r} has no complete trial: nothing to export; run it longer")
    verdict = stage_verdict(staged) if staged else None
    winner = None if verdict is None else ["--finalist", str(verdict.winner.trial)]
    exports = {
        "default": scored_export(name, [], args, truth, groups),
        "winner": None if winner is None else scored_export(name, winner, args, truth, groups),
        "best_alone": scored_export(name, ["--trial", str(study.best_trial.number)], args, truth, groups),
        "baseline": models_of(study, base, staged, name, args, truth, groups),
        "warm_start": models_of(study, warm, staged, name, args, truth, groups),
    }
    return {
        "study": name,
        "seed": seed,
        "wall_s": None if wall is None else round(wall),
        "epoch_s": finalists.epoch_seconds([t for t in trials if t.state == STATES.COMPLETE]),
        "complete": sum(t.state == STATES.COMPLETE for t in trials),
        "pruned": sum(t.state == STATES.PRUNED for t in trials),
        "runs": sum(len(f.runs) for f in staged),
        "planned_runs": sum(f.folds for f in staged if f.role != "earlier finalist"),
        "best_trial": study.best_trial.number,
        "baseline_trial": None if base is None else base.number,
        "warm_start_trial": None if warm is None else warm.number,
        **exports,
        "equal_weights": (equal := equal_weights([exports["baseline"], exports["warm_start"]], truth, groups)),
        "default_minus_winner": paired(exports["default"], exports["winner"], groups),
        "default_minus_best_alone": paired(exports["default"], exports["best_alone"], groups),
        "default_minus_baseline": paired(exports["default"], exports["baseline"], groups),
        "default_minus_warm_start": paired(exports["default"], exports["warm_start"], groups),
        "default_minus_equal_weights": paired(exports["default"], equal, groups),
        "search_verdict": gain_line(study),
        "stage_verdict": stage_verdict_line(staged) if staged else None,
    }


def cell(r: dict | None) -> str:
    """A table cell: test MAE +- its image-bootstrap SE (and the study's own figure for it)."""
    if r is None:
        return "n/a"
    se = "n/a" if r["se"] is None else f"{r['se']:.3f}"
    own = f" ({r['val_kind']} {r['val']:.3f})" if "val_kind" in r else ""
    return f"**{r['mae']:.3f}** +- {se}{own}"


def report(args, rows: list[dict], n_images: int, seconds: float) -> str:
    """The Markdown section: what was run and what it measured."""
    m = machine()
    lines = [
        f"## The {'default' if args.timeout is None else f'{args.timeout:.0f}-second'} study end to end: "
        "its submissions on unseen images",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/search_gain.py', *args.argv])}`  ",
        f"Training file: `{shown(args.train or data.DEFAULT_TRAIN)}`.  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, ISA {', '.join(m['isa'])}; torch {m['torch']}, "
        f"Python {m['python']}. "
        + (
            f"The studies ran at the same time, {args.threads} torch thread(s) each.  "
            if args.threads
            else f"The studies ran one after another, {m['torch_threads']} torch threads.  "
            if args.threads is None
            else "The studies existed: their commands did not run here.  "
        ),
        f"Test: `{shown(args.test)}` ({n_images} images) scored against `{shown(args.truth)}`; "
        f"each MAE +- its standard error over test images. Total {seconds:.0f} s.",
        "",
        "| study | command wall s | s per epoch | search trials (complete / pruned) | finalist runs | "
        "default export | best trial alone | reference's models | warm start's models |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        wall = "existed" if r["wall_s"] is None else str(r["wall_s"])
        epoch = "n/a" if r["epoch_s"] is None else f"{r['epoch_s']:.1f}"
        lines.append(
            f"| `{r['study']}` (seed {r['seed']}) | {wall} | {epoch} | {r['complete']} / {r['pruned']} | "
            f"{r['runs']} of {r['planned_runs']} | {cell(r['default'])} | {cell(r['best_alone'])} "
            f"(trial {r['best_trial']}) | {cell(r['baseline'])} | {cell(r['warm_start'])} |"
        )
    lines.append("")
    for r in rows:
        exported = r["default"]["exported"] if r["default"] else "nothing"
        lines += [
            f"`{r['study']}`: exported {exported}; its models alone scored {members(r['default'])}; "
            f"the reference's models alone {members(r['baseline'])}; the warm start's {members(r['warm_start'])}.  ",
            "Paired over test images, default export minus best trial alone: "
            f"{diff_text(r['default_minus_best_alone'])}; minus the reference's models: "
            f"{diff_text(r['default_minus_baseline'])}; minus the warm start's: "
            f"{diff_text(r['default_minus_warm_start'])}.  ",
            f"Weights chosen out of fold: {(r['default'] or {}).get('weights')}; the study's own figure for the "
            f"export ({(r['default'] or {}).get('val_kind')}) {cell_value(r['default'])} against its test MAE "
            f"{cell_value(r['default'], 'mae')}; the winner's models alone {cell(r['winner'])}, the finalists' "
            f"equal-weight mean {cell(r['equal_weights'])}; default export minus the winner's models: "
            f"{diff_text(r['default_minus_winner'])}, minus the equal-weight mean: "
            f"{diff_text(r['default_minus_equal_weights'])}.  ",
            f"Intervals on the test tiles: {coverage_text((r['default'] or {}).get('coverage'))}.  ",
            *(
                [
                    f"Against `{shown(args.against)}` (same seed: it exported {r['earlier_default']['exported']}, "
                    f"{cell(r['earlier_default'])}): default export minus it {diff_text(r['default_minus_earlier'])}.  "
                ]
                if r["earlier_default"]
                else []
            ),
            f"Search: {r['search_verdict']}.  ",
            f"Verdict out of fold: {r['stage_verdict'] or 'no finalist stage'}.",
            "",
        ]
    return "\n".join(lines)


def cell_value(r: dict | None, key: str = "val") -> str:
    return "n/a" if r is None else f"{r[key]:.3f}"


def coverage_text(c: dict | None) -> str:
    """Coverage and mean width, overall and by tercile of the true count."""
    if c is None:
        return "none"
    terciles = ", ".join(f"{cov:.0%} (width {w:.1f})" for cov, w, *_ in c["terciles"])
    return f"{c['level']:.0%} intervals cover {c['all'][0]:.1%} (mean width {c['all'][1]:.2f}); by tercile {terciles}"


def members(r: dict | None) -> str:
    """Each member model's test MAE alone, as a list."""
    return "n/a" if r is None else ", ".join(f"{m:.3f}" for m in r["members_alone"])


def diff_text(d: stats.Comparison | None) -> str:
    """A paired difference with its standard error and 95% interval, or why there is none."""
    if d is None:
        return "n/a"
    if d.too_few:
        return f"{d.diff:+.3f} (no interval: {d.too_few})"
    return f"{d.diff:+.3f} +- {d.se:.3f} (95% interval {d.low:+.3f} to {d.high:+.3f})"


def main(argv=None) -> int:
    args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    n_test = len(data.load_test(args.test))
    truth = data.load_counts_csv(args.truth, n=n_test)
    groups = load_test_groups(args.groups, n_test)
    names = [f"{args.prefix}{seed}" for seed in args.study_seeds]
    walls = run_studies(names, args.study_seeds, args)
    rows = [measure(name, seed, walls[name], args, truth, groups) for name, seed in zip(names, args.study_seeds)]
    earlier = {} if args.against is None else {r["seed"]: r for r in json.loads(args.against.read_text())}
    for r in rows:
        before = earlier.get(r["seed"], {}).get("default")
        r["earlier_default"] = None if before is None else {k: before[k] for k in ("mae", "se", "exported")}
        r["default_minus_earlier"] = paired(r["default"], before, groups)
    text = report(args, rows, len(np.unique(groups)), time.perf_counter() - started)
    print(text)
    if args.write:
        write_section(args.section, text)
    print(json.dumps([{k: v.to_dict() if isinstance(v, stats.Comparison) else v for k, v in r.items()} for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
