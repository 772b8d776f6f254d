"""Benchmark: a fixed, seeded study on the embedded data, the seed's baseline beside the best trial.

    python benchmarks/study_benchmark.py                       # runs the default quick study, then scores it
    python benchmarks/study_benchmark.py --study-name cells --no-run   # scores an existing study

For the baseline trial (the seed's configuration) and the best trial it writes the validation
MAE, the test MAE against the embedded test counts and the test bias (mean signed error), with
and without TTA and refit, into BENCHMARKS.md between the ``study`` markers. It also compares the
two ways of scoring a trial: its best counting setting tuned on validation (``--objective tuned``)
and its sampled counting parameters.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import data  # noqa: E402
from model.checkpoint import load_checkpoint  # noqa: E402
from model.count import count_setting  # noqa: E402
from model.train import predict_prob, pick_device  # noqa: E402
from search import export, space, study  # noqa: E402

from common import machine, write_section  # noqa: E402  (benchmarks/ is sys.path[0])


def score_on_test(net, counting, images, truth, tta):
    """Test MAE and bias of ``net`` with ``counting``."""
    error = count_setting(predict_prob(net, images, tta=tta), counting) - truth
    return float(np.abs(error).mean()), float(error.mean())


def best_val_counting(trial):
    """The trial's best counting setting on validation, from its recorded scores."""
    grid = space.counting_grid()
    scores = trial.user_attrs["counting_scores"]
    return min(grid, key=lambda s: scores[study.setting_name(s)])


def rows_for(s, trial, label, images, truth, device, refit):
    net, config = load_checkpoint(trial.user_attrs["checkpoint"], device)
    sampled = space.counting_of(trial.params)
    tuned = best_val_counting(trial)
    scores = trial.user_attrs["counting_scores"]
    rows = []
    for how, counting in (("sampled counting", sampled), ("tuned counting", tuned)):
        val = scores[study.setting_name(counting)]
        for tta in (False, True):
            mae, bias = score_on_test(net, counting, images, truth, tta)
            rows.append((label, how, study.setting_name(counting), "TTA" if tta else "", val, mae, bias))
    if refit:
        t0 = time.perf_counter()
        net, _ = export.refit(s, trial, config, device)
        mae, bias = score_on_test(net, tuned, images, truth, True)
        rows.append((label, f"tuned counting, refit ({time.perf_counter() - t0:.0f} s)",
                     study.setting_name(tuned), "TTA", scores[study.setting_name(tuned)], mae, bias))
    return rows


def table(rows) -> str:
    lines = ["| trial | scored with | counting | TTA | val MAE | test MAE | test bias |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {t} | {h} | `{c}` | {a} | {v:.3f} | {m:.3f} | {b:+.3f} |" for t, h, c, a, v, m, b in rows]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study-name", default="bench")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-run", action="store_true", help="score an existing study without running trials")
    p.add_argument("--no-refit", action="store_true", help="skip the refit rows")
    args = p.parse_args(argv)

    command = "python benchmarks/study_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    if not args.no_run:
        code = study.main(["--study-name", args.study_name, "--seed", str(args.seed), "--timeout", str(args.timeout)])
        if code:
            sys.exit(code)
    wall = time.perf_counter() - started
    s = optuna.load_study(study_name=args.study_name, storage=f"sqlite:///studies/{args.study_name}.db")
    complete = s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    pruned = s.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    baseline = next(t for t in complete if t.user_attrs.get("baseline"))
    best = s.best_trial
    by_sampled = min(complete, key=lambda t: t.user_attrs["val_mae_sampled_counting"])

    device = pick_device("auto")
    images = data.load_test(data.DEFAULT_TEST)
    truth = data.load_counts_csv(data.DEFAULT_TEST_COUNTS, n=len(images))
    rows = rows_for(s, baseline, f"{baseline.number} (seed baseline)", images, truth, device, False)
    rows += rows_for(s, best, f"{best.number} (best, tuned objective)", images, truth, device, not args.no_refit)
    if by_sampled.number != best.number:
        rows += rows_for(s, by_sampled, f"{by_sampled.number} (best by sampled counting)", images, truth, device, False)

    m = machine()
    text = "\n".join([
        "## Study benchmark: seed baseline vs best trial (embedded data)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}, "
        f"device {device}, Python {m['python']}  ",
        f"Study `{args.study_name}`: profile {s.user_attrs['profile']}, seed {s.user_attrs['seed']}, "
        f"objective {s.user_attrs['counting_objective']}; {len(complete)} complete and {len(pruned)} pruned trials (those stopped by the timeout included)"
        + (f" in {wall:.0f} s" if not args.no_run else "") + ".  ",
        f"Validation: the study's 20% split of the training tiles; test: the {len(images)} embedded test "
        "tiles against `data/embedded/test_counts.csv`.",
        "",
        table(rows),
        "",
        "*sampled counting*: the counter parameters and offset the trial sampled; *tuned counting*: the "
        "setting with the lowest validation MAE among all the space's counting settings, scored on the "
        "trial's validation predictions after training. Bias = mean(predicted - true).",
    ])
    write_section("study", text)
    print(text)


if __name__ == "__main__":
    main()
