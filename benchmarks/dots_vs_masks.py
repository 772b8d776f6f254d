"""Targets from one file: one configuration trained on its masks, on disks at its centres, on a density map.

    flock /tmp/cpu.lock python benchmarks/dots_vs_masks.py --write
    python benchmarks/dots_vs_masks.py --seeds 1 2 3 --radius 4 --sigma 3

``--train`` (the embedded ``train_data.npz``) has soft masks ``y`` and cell centres ``points``:
a study of it searches the target among the three. Here each route trains the profile's warm
start with one target fixed: ``masks`` (the soft masks), ``disks`` (radius ``--radius`` at the
centres) and ``density`` (Gaussians of sigma ``--sigma``), on the same split (by source image,
``--split-seed`` as a study's ``--seed``), through the study's own objective,
``search.stages.objective.Objective``: one run per training seed, the seed given as a finalist
run's is, and each run's counting chosen on validation as a study chooses it. Each model is then
scored on the held-out test tiles with the counting its run chose. Prints every run's
validation and test MAE, each route's mean and sd over seeds, and each centre route's
difference from the masks route (test means) with a standard error over test images (bootstrap
over their source images, ``--groups``). Checkpoints and figures go to
``studies/dots-vs-masks-<route>-seed<k>-<id>/``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from common import load_test_groups, machine, shown, write_section  # noqa: E402

import data  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.count import count_setting  # noqa: E402
from model.device import pick_device  # noqa: E402
from model.infer import predict_prob  # noqa: E402
from search import space  # noqa: E402
from search.results import stats  # noqa: E402
from search.roles import SEED_ATTR  # noqa: E402
from search.runtime.artifacts import ensure_study_dir, study_dir  # noqa: E402
from search.stages.objective import Objective, study_split  # noqa: E402
from search.stages.prepare import VAL_FRACTION  # noqa: E402

ROUTES = ("masks", "disks", "density")  # the targets of a file with masks and centres (space.TARGETS)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/dots_vs_masks.py", description=__doc__.splitlines()[0])
    p.add_argument("--train", type=Path, default=data.DEFAULT_TRAIN, help="training file with y and points or labels")
    p.add_argument("--test", type=Path, default=data.DEFAULT_TEST, help="held-out images (default: embedded)")
    p.add_argument("--truth", type=Path, default=data.DEFAULT_TEST_COUNTS, help="their true counts CSV")
    p.add_argument(
        "--groups", type=Path, default=data.DEFAULT_TEST_TRUTH, help="npz with the test tiles' source images 'groups'"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="training seeds (default: 1 2 3)")
    p.add_argument(
        "--radius",
        type=_positive_int,
        default=space.DEFAULT_RADIUS,
        help="disk radius of the disks route, px (default: a study's warm start, %(default)s)",
    )
    p.add_argument(
        "--sigma",
        type=float,
        default=space.DEFAULT_SIGMA,
        help="Gaussian sigma of the density route, px (default: a crowded study's warm start, %(default)s)",
    )
    p.add_argument(
        "--profile", choices=sorted(space.PROFILES), default="quick", help="whose warm start (default: %(default)s)"
    )
    p.add_argument("--split-seed", type=int, default=0, help="seeds the split, as a study's --seed (default: 0)")
    p.add_argument("--device", default="auto")
    p.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    return p.parse_args(argv)


def route_params(profile, route: str, args) -> dict:
    """The warm start of a file with masks and centres, its target fixed to ``route``'s."""
    params = {k: v for k, v in space.warm_start(profile, "masks+dots").items() if k != space.RADIUS}
    if route == "disks":
        return {**params, space.TARGET: "disks", space.RADIUS: args.radius}
    if route == "density":
        return {**params, space.TARGET: "density", space.SIGMA: args.sigma}
    return {**params, space.TARGET: "mask"}


def train_once(split: data.Split, profile, params: dict, seed: int, args, label: str, device):
    """Train ``params`` with training seed ``seed`` through the study's objective; returns the complete trial."""
    scratch = optuna.create_study(
        study_name=f"dots-vs-masks-{label}-seed{seed}", direction="minimize", pruner=optuna.pruners.NopPruner()
    )
    ensure_study_dir(scratch)
    # The seed as a finalist run carries it: the objective's own seed (the split's) picks the counting halves.
    scratch.enqueue_trial(params, user_attrs={SEED_ATTR: seed})
    objective = Objective(split, profile, device, args.split_seed, "tuned", study_dir(scratch), lambda trial: math.inf)
    scratch.optimize(objective, n_trials=1)
    trial = scratch.trials[0]
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise SystemExit(f"{label} seed {seed}: {trial.user_attrs.get('fail_reason', trial.state.name.lower())}")
    return trial


def scored_errors(trial, images: np.ndarray, truth: np.ndarray, device) -> np.ndarray:
    """Per-tile test count errors of a run's model with the counting its run chose, counted as the export counts."""
    net, config = load_checkpoint(trial.user_attrs["checkpoint"], device)
    prediction = predict_prob(net, images, loss=config["train"]["loss"])  # a density trial's is its density map
    return count_setting(prediction, trial.user_attrs["counting"]) - truth


def sd(values: list[float]) -> float | None:
    """Sample standard deviation; None from a single value."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def summarize(runs: dict, groups: np.ndarray) -> dict:
    """Each route's mean and sd over seeds, and each centre route minus masks with its SE over test images.

    A route's per-tile error is its mean absolute error over seeds, so the paired bootstrap over
    test images resamples the same images for both routes and keeps every seed's model.
    """
    per_tile = {route: np.abs([r["errors"] for r in rs]).mean(0) for route, rs in runs.items()}
    out = {}
    for route, rs in runs.items():
        tests = [r["test"] for r in rs]
        out[route] = {
            "test_mean": float(np.mean(tests)),
            "test_sd": sd(tests),
            "test_se_images": stats.mae_se(per_tile[route], groups),
            "val_mean": float(np.mean([r["val"] for r in rs])),
            "val_sd": sd([r["val"] for r in rs]),
        }
    out["difference"] = {}
    for route in ROUTES[1:]:
        difference = stats.compare(per_tile[route], per_tile["masks"], groups)
        # JSON has no Infinity: the degrees of freedom are infinite when the routes' errors agree on every image.
        out["difference"][route] = {k: None if v == math.inf else v for k, v in difference.to_dict().items()}
    return out


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def difference_line(route: str, d: dict) -> str:
    """A centre route's test mean minus the masks route's, with its standard error over test images."""
    if "se" in d:
        se = f"standard error over test images **{d['se']:.3f}** (95% interval {d['low']:+.3f} to {d['high']:+.3f})"
    else:
        se = f"no standard error over test images: {d['too_few']}"
    return f"Difference of the test means ({route} minus masks): **{d['diff']:+.3f}** MAE; {se}."


def route_name(route: str, args) -> str:
    if route == "disks":
        return f"disks (radius {args.radius} px)"
    return f"density (sigma {args.sigma:g} px)" if route == "density" else "masks"


def report(args, argv: list[str], facts: dict, runs: dict, summary: dict) -> str:
    """The Markdown section: the command, the machine and every figure of this run."""
    m = machine()
    lines = [
        "## Training targets: one configuration from masks, from disks at the centres, from a density map",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/dots_vs_masks.py', *argv])}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), ISA {', '.join(m['isa'])}; "
        f"torch {m['torch']}, Python {m['python']}.  ",
        f"Training: `{shown(args.train)}`, {facts['n_train']} training and {facts['n_val']} validation tiles, split "
        f"{facts['rule']} (seed {args.split_seed}); the masks route trains on its `y`, the others on targets drawn "
        f"at its {facts['n_points']} cell centres: disks of radius {args.radius} px, or Gaussians of sigma "
        f"{args.sigma:g} px. Validation true counts: {facts['source']}.  ",
        f"Configuration: the `{args.profile}` profile's warm start, `{facts['params']}` but its target, through "
        f"`search.stages.objective.Objective` (counting chosen on validation, out of sample).  ",
        f"Test: `{shown(args.test)}` ({facts['n_test']} tiles from {facts['n_test_images']} images) against "
        f"`{shown(args.truth)}`. "
        f"Total {facts['seconds']:.0f} s.",
        "",
        "| route | " + " | ".join(f"seed {s} val / test" for s in args.seeds) + " | val mean (sd) | test mean (sd) "
        "| test SE over images |",
        "|---|" + "---|" * (len(args.seeds) + 3),
    ]
    for route in ROUTES:
        s = summary[route]
        cells = " | ".join(f"{r['val']:.3f} / {r['test']:.3f}" for r in runs[route])
        lines.append(
            f"| {route_name(route, args)} | {cells} | {s['val_mean']:.3f} ({fmt(s['val_sd'])}) | "
            f"**{s['test_mean']:.3f}** ({fmt(s['test_sd'])}) | {fmt(s['test_se_images'])} |"
        )
    lines += [
        "",
        "Counting each run chose: "
        + "; ".join(f"{route} seed {r['seed']} `{r['counting']}`" for route in ROUTES for r in runs[route])
        + ".  ",
        *(difference_line(route, summary["difference"][route]) + "  " for route in ROUTES[1:]),
    ]
    return "\n".join(lines).rstrip()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    device = pick_device(args.device)
    profile = space.PROFILES[args.profile]
    images = data.load_test(args.test)
    truth = data.load_counts_csv(args.truth, n=len(images))
    groups = load_test_groups(args.groups, len(images))
    split, source, rule = study_split(args.train, args.split_seed, VAL_FRACTION, "image")
    if split.annotation != "masks+dots":
        raise SystemExit(f"{args.train} needs masks and cell centres ('points' or 'labels'): it has {split.annotation}")
    runs = {}
    # One split for all: the same tiles on each side, the routes differ in their targets only.
    for route in ROUTES:
        params = route_params(profile, route, args)
        for seed in args.seeds:
            t0 = time.perf_counter()
            trial = train_once(split, profile, params, seed, args, route, device)
            errors = scored_errors(trial, images, truth, device)
            run = {
                "seed": seed,
                "val": trial.value,
                "val_se": trial.user_attrs["value_se"],
                "test": float(np.abs(errors).mean()),
                "counting": trial.user_attrs["counting_name"],
                "seconds": round(time.perf_counter() - t0, 1),
                "errors": errors,
            }
            runs.setdefault(route, []).append(run)
            print(
                f"{route} seed {seed}: val {run['val']:.3f} +- {fmt(run['val_se'])}, test {run['test']:.3f} "
                f"with {run['counting']} ({run['seconds']:.0f} s)",
                flush=True,
            )
    facts = {
        "n_train": len(split.train_images),
        "n_val": len(split.val_images),
        "n_points": len(split.train_points) + len(split.val_points),
        "rule": rule,
        "source": source,
        "params": route_params(profile, "masks", args),
        "n_test": len(images),
        "n_test_images": len(np.unique(groups)),
    }
    summary = summarize(runs, groups)
    facts["seconds"] = time.perf_counter() - started
    text = report(args, argv, facts, runs, summary)
    print(text)
    if args.write:
        write_section("dots", text)
    for rs in runs.values():
        for r in rs:
            del r["errors"]
    result = {"runs": runs, "summary": summary, "radius": args.radius, "sigma": args.sigma}
    print(json.dumps({**result, "seconds": round(facts["seconds"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
