"""Does the study's best configuration beat the seed baseline's on images it never saw?

    python benchmarks/search_gain.py --write                  # run the default study, then measure
    python benchmarks/search_gain.py --study-name cells       # reuse a finished study
    python benchmarks/search_gain.py --test other.npz --truth other.csv

Retrains the best trial's configuration and the seed baseline's with fresh training seeds
through the study's own objective, ``search.objective.Objective`` (same split, same profile,
same counting choice), scores
each on the held-out test tiles with the counting setting that run chose on validation, and
prints mean and spread per configuration and the gain. It also scores every complete trial
of the study on the test tiles, and reports how well trial values rank configurations
(Spearman correlation of value against test MAE), for the study's value and for the old,
optimistic in-sample value. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from common import machine, write_section  # noqa: E402

import data  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.count import count_setting  # noqa: E402
from model.train import pick_device, predict_prob  # noqa: E402
from search import space, study  # noqa: E402
from search.artifacts import ensure_study_dir, study_dir  # noqa: E402
from search.objective import Objective, study_split  # noqa: E402
from search.storage import find_storage, load_existing_study  # noqa: E402
from search.verdict import baseline_trial, gain_line  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python benchmarks/search_gain.py", description=__doc__.splitlines()[0])
    p.add_argument("--study-name", default="search-gain", help="study to measure; run first when it does not exist")
    p.add_argument("--storage", help="its storage URL (default: the study command's)")
    p.add_argument("--test", type=Path, default=data.DEFAULT_TEST, help="held-out images (default: embedded)")
    p.add_argument("--truth", type=Path, default=data.DEFAULT_TEST_COUNTS, help="their true counts CSV")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="fresh training seeds (default: 1 2 3)")
    p.add_argument("--device", default="auto")
    p.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    return p.parse_args(argv)


def test_mae(checkpoint: str, counting: dict, images: np.ndarray, truth: np.ndarray, device) -> float:
    """Test count-MAE of a saved net with a counting setting, counted as the export counts."""
    net, _ = load_checkpoint(checkpoint, device)
    counts = count_setting(predict_prob(net, images), counting)
    return float(np.abs(counts - truth).mean())


def retrain(s: optuna.Study, params: dict, seed: int, split, device, label: str) -> optuna.trial.FrozenTrial:
    """Run ``params`` once more through the study's objective with training seed ``seed``."""
    meta = s.user_attrs
    scratch = optuna.create_study(study_name=f"{s.study_name}-{label}-seed{seed}", direction="minimize")
    ensure_study_dir(scratch)
    scratch.enqueue_trial(params)
    objective = Objective(
        split,
        space.PROFILES[meta["profile"]],
        device,
        seed,
        meta["counting_objective"],
        study_dir(scratch),
        float("inf"),
    )
    t0 = time.perf_counter()
    scratch.optimize(objective, n_trials=1)
    trial = scratch.trials[0]
    print(
        f"{label} seed {seed}: val {trial.value:.3f} with {trial.user_attrs['counting_name']} "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    return trial


def spearman(x, y) -> float:
    """Rank correlation (Pearson on average ranks); NaN below 3 points."""
    if len(x) < 3:
        return float("nan")
    return float(pd.Series(x).rank().corr(pd.Series(y).rank()))


def main(argv=None) -> int:
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = pick_device(args.device)
    images, started = data.load_test(args.test), time.perf_counter()
    truth = data.load_counts_csv(args.truth, n=len(images))
    if args.storage is None and not Path(f"studies/{args.study_name}.db").exists():
        t0 = time.perf_counter()
        if study.main(["--study-name", args.study_name]) != 0:
            return 1
        print(f"study ran in {time.perf_counter() - t0:.0f} s", flush=True)
    storage = args.storage or find_storage(args.study_name)
    s = load_existing_study(args.study_name, storage)
    meta = s.user_attrs
    split, _, rule = study_split(Path(meta["train_path"]), meta["seed"], meta["val_fraction"], meta["split"])

    complete = s.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    rows = [
        {
            "trial": t.number,
            "value": t.value,
            "in_sample": t.user_attrs["val_mae_best_in_sample"],
            "test": test_mae(t.user_attrs["checkpoint"], t.user_attrs["counting"], images, truth, device),
            "counting": t.user_attrs["counting_name"],
            **t.params,
        }
        for t in complete
    ]
    trials = pd.DataFrame(rows).set_index("trial")
    best, base = s.best_trial, baseline_trial(s)

    runs = {}
    for label, trial in (("best", best), ("baseline", base)):
        for seed in args.seeds:
            r = retrain(s, trial.params, seed, split, device, label)
            runs.setdefault(label, []).append(
                {
                    "seed": seed,
                    "val": r.value,
                    "test": test_mae(r.user_attrs["checkpoint"], r.user_attrs["counting"], images, truth, device),
                }
            )
    stats = {k: (np.mean([r["test"] for r in v]), np.std([r["test"] for r in v], ddof=1)) for k, v in runs.items()}
    result = {
        "study": args.study_name,
        "best_trial": best.number,
        "baseline_trial": base.number,
        "best_mean": stats["best"][0],
        "best_sd": stats["best"][1],
        "baseline_mean": stats["baseline"][0],
        "baseline_sd": stats["baseline"][1],
        "gain": stats["baseline"][0] - stats["best"][0],
        "export_mae": float(trials.loc[best.number, "test"]),
        "baseline_export_mae": float(trials.loc[base.number, "test"]),
        "spearman": spearman(trials["value"], trials["test"]),
        "spearman_in_sample": spearman(trials["in_sample"], trials["test"]),
        "n_complete": len(trials),
        "n_trials": len(s.trials),
        "seeds": args.seeds,
        "seconds": round(time.perf_counter() - started),
    }
    text = report(args, s, rule, trials, runs, result)
    print(text)
    if args.write:
        write_section("gain", text)
    # NaN is not JSON: a correlation over fewer than 3 trials is null.
    print(json.dumps({k: None if isinstance(v, float) and np.isnan(v) else v for k, v in result.items()}))
    return 0


def report(args, s, rule, trials, runs, r) -> str:
    """The Markdown section: what was run and what it measured."""
    m = machine()
    states = pd.Series([t.state.name.lower() for t in s.trials]).value_counts()
    lines = [
        "## Search gain: the study's best configuration against the seed baseline's, on unseen images",
        "",
        f"Command: `python benchmarks/search_gain.py{' --write' if args.write else ''}"
        f"{'' if args.study_name == 'search-gain' else ' --study-name ' + args.study_name}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), ISA {', '.join(m['isa'])}; "
        f"torch {m['torch']}, Python {m['python']}.  ",
        f"Study `{s.study_name}`: profile {s.user_attrs['profile']}, seed {s.user_attrs['seed']}, "
        f"objective {s.user_attrs['counting_objective']}; trials: "
        + ", ".join(f"{n} {state}" for state, n in states.items())
        + f". Split {rule}.  ",
        f"Test: `{args.test}` scored against `{args.truth}`. Total {r['seconds']} s.",
        "",
        "Every complete trial of the study, scored on the test tiles with its own counting setting:",
        "",
        "| trial | value (out-of-sample counting) | in-sample best counting | test MAE | counting | params |",
        "|---|---|---|---|---|---|",
    ]
    for n, t in trials.iterrows():
        params = ", ".join(f"{k}={t[k]:.3g}" if isinstance(t[k], float) else f"{k}={t[k]}" for k in s.trials[n].params)
        lines.append(
            f"| {n} | {t['value']:.3f} | {t['in_sample']:.3f} | {t['test']:.3f} | `{t['counting']}` | {params} |"
        )
    lines += [
        "",
        f"Spearman correlation of trial value against test MAE: **{r['spearman']:.2f}** (the old in-sample value: "
        f"{r['spearman_in_sample']:.2f}), over {r['n_complete']} complete trials.",
        "",
        f"Retrained through `search.objective.Objective` with training seeds {', '.join(map(str, r['seeds']))}:",
        "",
        "| configuration | " + " | ".join(f"seed {x} val / test" for x in r["seeds"]) + " | test mean | test sd |",
        "|---|" + "---|" * (len(r["seeds"]) + 2),
    ]
    for label, trial in (("best", r["best_trial"]), ("baseline", r["baseline_trial"])):
        cells = " | ".join(f"{x['val']:.3f} / {x['test']:.3f}" for x in runs[label])
        lines.append(f"| {label} (trial {trial}) | {cells} | **{r[label + '_mean']:.3f}** | {r[label + '_sd']:.3f} |")
    lines += [
        "",
        f"Gain (baseline mean minus best mean): **{r['gain']:+.3f}** MAE. Exported submissions (the study's own "
        f"checkpoints): best trial {r['export_mae']:.3f}, seed baseline {r['baseline_export_mae']:.3f}.",
        f"The study's own verdict: {gain_line(s)}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
