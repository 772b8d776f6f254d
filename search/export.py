"""Turn a study into a competition submission CSV: its finalists' models weighted out of fold, or one trial.

    python -m search.export                         # study 'cells' -> submission.csv
    python -m search.export --truth data/embedded/test_counts.csv
    python -m search.export --trial 7 --out t7.csv  # one trial's model alone
    python -m search.export --refit --tta --out submission.csv

By default the submission is the finalists' models, weighted and counted as chosen on their
out-of-fold counts (:mod:`search.results.blend`): each finalist's search trial's model and its
fold models, which saw different training images. Each predicts the test tiles and counts them
with the counting setting it chose; each count gets a CV+ interval (``--interval``), logged, and
written as columns with ``--intervals``. Before the finalist stage has compared its finalists on a
fold, the best trial is exported alone. ``--refit`` first
retrains each model's configuration, with its seed, on all training tiles (train +
validation; a dots study's targets drawn as its checkpoint records: disks or a density map);
``--tta`` averages each model's predictions over the 8 flips/rotations. The run is logged
beside the CSV as JSON. Which models, and their checked checkpoints, come from :mod:`search.members`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

import data
from model.checkpoint import atomic_write, save_checkpoint
from model.count import count_setting
from model.infer import predict_prob
from model.train import TrainConfig, fit, seeded_net
from model.unet import UNetConfig
from search import cli, space
from search.members import Choice, Member, blend_counts, choose, load_member
from search.results import intervals
from search.roles import FOLD_ATTR
from search.runtime.artifacts import project_dir, training_file
from search.runtime.storage import check_study_name, find_storage, given_storage, load_existing_study, safe_url
from search.stages.objective import training_targets


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.parser(
        "python -m search.export",
        "Write submission.csv (index,count) from a study: its winning finalist's models, or one trial.",
        "studies/<name>.db, or studies/<name>.journal.log when only that exists",
    )
    models = p.add_argument_group("models")
    cli.add_model_choice(models, "export")
    models.add_argument(
        "--refit", action="store_true", help="retrain each model's configuration on train + validation tiles first"
    )
    models.add_argument("--tta", action="store_true", help="average each model's predictions over flips and rotations")
    cli.add_interval(models)
    files = p.add_argument_group("files")
    files.add_argument(
        "--test", type=Path, default=data.DEFAULT_TEST, help="test npz with X (default: the embedded test tiles)"
    )
    files.add_argument(
        "--out",
        type=Path,
        default=Path("submission.csv"),
        help="CSV to write; its JSON log goes beside it, same name ending in .json (default: %(default)s)",
    )
    files.add_argument("--truth", type=Path, help="index,count CSV of true counts: print MAE and bias")
    files.add_argument(
        "--intervals", action="store_true", help="add each count's interval to the CSV as columns low,high"
    )
    return p.parse_args(argv)


def refit(study: optuna.Study, member: Member, config: dict, project: Path, device) -> tuple:
    """Retrain the member's configuration, with its seed, on every training tile; saved beside its checkpoint.

    The study's training file and the checkpoint are found from its ``project`` folder, not the working one.
    """
    folder = project / member.trial.user_attrs["checkpoint"]
    train_path = training_file(study.user_attrs, project, "cannot refit on the data the study trained on")
    images, masks, points = data.load_train_or_dots(train_path)
    train = TrainConfig(**config["train"])
    unet = UNetConfig(**config["unet"])
    net = seeded_net(unet, train.seed, device)
    # The targets are those its checkpoint's trial trained on: the masks, or drawn at the centres.
    targets = f" ({space.target_text(config['params'])})" if space.TARGET in config["params"] else ""
    print(
        f"refit: {member.label}'s configuration on all {len(images)} tiles{targets} for {train.epochs} epochs",
        flush=True,
    )
    result = fit(
        net,
        train,
        images,
        training_targets(images, masks, points, config["params"]),
        on_epoch=lambda r: print(
            f"  refit epoch {r.epoch}/{train.epochs}: train loss {r.train_loss:.4f} ({r.seconds:.1f} s)", flush=True
        ),
    )
    directory = save_checkpoint(folder / "refit", result.state_dict, unet, {**config, "refit": True})
    net.load_state_dict(result.state_dict)
    return net.eval(), directory


def log_path(out: Path) -> Path:
    """Where the JSON log of a submission written to ``out`` goes; refuses one that would overwrite it."""
    return cli.beside(out, ".json", "its log")


def export(args) -> dict:
    """Write the chosen models' count-averaged counts of ``--test`` to ``--out`` and its JSON log.

    Returns the log: what was exported, its members (each with its seed, fold, counting and
    checkpoint) and, with ``--truth``, the test MAE of the submission and of each member.
    """
    # Both outputs are checked before a refit, not after it.
    log_file = cli.check_output_file(log_path(cli.check_output_file(args.out, "--out")), "--out's log")
    data.check_distinct_outputs(
        {"--out": args.out, "--out's log": log_file}, {"--test": args.test, "--truth": args.truth}
    )
    check_study_name(args.study_name)  # it names files: studies/<name>.db
    storage_url = given_storage(args.storage) or find_storage(args.study_name)
    study = load_existing_study(args.study_name, storage_url)
    cli.check_spares_study({"--out": args.out, "--out's log": log_file}, storage_url, study)
    choice = choose(study, args.trial, args.finalist)
    images = data.load_test(args.test)
    truth = data.load_counts_csv(args.truth, n=len(images)) if args.truth else None
    counts, logged = count_members(study, choice, args, images, project_dir(study.user_attrs, storage_url))
    final, bounds = blend_counts(choice, np.stack(counts), args.interval)
    submission = pd.DataFrame({"index": np.arange(len(final)), "count": final})
    if args.intervals and bounds is not None:
        submission["low"], submission["high"] = bounds
    atomic_write(args.out, lambda p: submission.to_csv(p, index=False))
    log = {
        "study": args.study_name,
        "storage": safe_url(storage_url),
        "exported": choice.what,
        "trial": choice.source,
        "score": choice.score,
        "mae": choice.mae,
        "params": choice.members[0].trial.params,
        "members": logged,
        **({"counting": logged[0]["counting"]} if len(logged) == 1 else {}),
        "refit": args.refit,
        "tta": args.tta,
        "test": str(args.test),
        "test_fingerprint": data.fingerprint(args.test),
        "n_test": len(images),
        "submission": str(args.out),
        **interval_log(choice, bounds, args.interval),
    }
    print(
        f"exported {choice.what}: {choice.score} {choice.mae:.3f}{', refit' if args.refit else ''}"
        f"{', TTA' if args.tta else ''}; wrote {len(final)} counts to {args.out}"
    )
    if truth is not None:
        score_truth(log, args.truth, truth, final, counts, bounds)
    atomic_write(log_file, lambda p: p.write_text(json.dumps(log, indent=2)))
    return log


def interval_log(choice: Choice, bounds: tuple | None, level: float) -> dict:
    """What the log records of the blend and of every count's interval (``{}`` for one trial's model).

    Says so when the out-of-fold images are too few for an interval at ``level``.
    """
    if choice.blend is None:
        return {}
    if level > 0 and bounds is None:
        print(
            f"no intervals: {choice.blend.n_images} out-of-fold images, "
            f"a {level:.0%} interval needs {intervals.min_images(level)}"
        )
    extra = {} if bounds is None else {"low": bounds[0].tolist(), "high": bounds[1].tolist()}
    return {"blend": choice.blend.to_dict(), "interval": level, **extra}


def score_truth(log: dict, path: Path, truth: np.ndarray, final, counts: list, bounds: tuple | None) -> None:
    """Add the submission's and each member's test MAE (and the intervals' coverage) to ``log``, and print them."""
    error = final - truth
    log.update(truth=str(path), test_mae=float(np.abs(error).mean()), test_bias=float(error.mean()))
    log["member_test_mae"] = [float(np.abs(c - truth).mean()) for c in counts]
    log["member_test_counts"] = [np.asarray(c).tolist() for c in counts]  # for comparing other weightings
    covered = ""
    if bounds is not None:
        log["test_coverage"] = float(np.mean((bounds[0] <= truth) & (truth <= bounds[1])))
        log["test_interval_width"] = float(np.mean(bounds[1] - bounds[0]))
        covered = f"; intervals cover {log['test_coverage']:.1%}, mean width {log['test_interval_width']:.2f}"
    print(f"against {path}: MAE {log['test_mae']:.3f}, bias {log['test_bias']:+.3f}{covered}")


def count_members(study, choice: Choice, args, images: np.ndarray, project: Path) -> tuple[list, list[dict]]:
    """Each member's counts of ``images`` (refitted first with ``--refit``) and its log entry."""
    device = cli.resolve_device(args.device)
    # Every checkpoint is checked before any is refitted: a bad member must not cost the others' training.
    loaded = [load_member(m, project, args.test, images, device) for m in choice.members]
    counts, logged = [], []
    for member, (net, config, checkpoint) in zip(choice.members, loaded):
        if args.refit:
            net, checkpoint = refit(study, member, config, project, device)
        counting = member.trial.user_attrs["counting"]
        # A density net (loss "mse") predicts a density map, which its density counting sums.
        prediction = predict_prob(net, images, tta=args.tta, loss=config["train"]["loss"])
        counts.append(count_setting(prediction, counting))
        logged.append(
            {
                "run": member.label,
                "study": member.study.study_name,
                "trial": member.trial.number,
                "seed": config["train"]["seed"],
                "fold": member.trial.user_attrs.get(FOLD_ATTR),
                "finalist": member.key[0],  # the search trial whose configuration it trained
                # A fold run's is on its held-out fold, the search trial's on the validation images.
                "count_mae": member.trial.value,
                "counting": counting,
                "checkpoint": str(checkpoint),
            }
        )
    return counts, logged


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run_command(lambda: export(args))


if __name__ == "__main__":
    sys.exit(main())
