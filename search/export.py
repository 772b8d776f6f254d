"""Turn a study into a competition submission CSV: its winning finalist's seed ensemble, or one trial.

    python -m search.export                         # study 'cells' -> submission.csv
    python -m search.export --truth data/embedded/test_counts.csv
    python -m search.export --trial 7 --out t7.csv  # one trial's model alone
    python -m search.export --refit --tta --out submission.csv

By default the submission is the ensemble of the winning finalist (the finalist whose runs'
ensemble has the lowest validation MAE): each run's model predicts the test tiles and counts
them with the counting setting that run chose, and the counts are averaged and rounded. Before
the finalist stage has a finished run, the best trial is exported alone. ``--refit`` first
retrains each model's configuration, with its seed, on all training tiles (train +
validation; a dots study's targets drawn with the disk radius its checkpoint records);
``--tta`` averages each model's predictions over the 8 flips/rotations. The run is logged
beside the CSV as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd

import data
from model.checkpoint import (
    CONFIG,
    WEIGHTS,
    CheckpointError,
    atomic_write,
    checkpoint_from_bytes,
    load_checkpoint,
    save_checkpoint,
)
from model.count import count_setting
from model.train import TrainConfig, fit, predict_prob, seeded_net
from model.unet import UNetConfig
from search import cli, finalists, space, stats
from search.artifacts import FOLDER_ATTR, artifact_dir, project_dir, read_checkpoint_artifacts
from search.errors import UsageError
from search.objective import training_targets
from search.storage import check_study_name, find_storage, given_storage, load_existing_study, safe_url
from search.verdict import seed_verdict

COMPLETE = optuna.trial.TrialState.COMPLETE


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.parser(
        "python -m search.export",
        "Write submission.csv (index,count) from a study: its winning finalist's seed ensemble, or one trial.",
        "studies/<name>.db, or studies/<name>.journal.log when only that exists",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, help="export this search trial's model alone")
    which.add_argument(
        "--finalist", type=int, help="export the seed ensemble of the finalist of this trial number (e.g. the baseline)"
    )
    p.add_argument(
        "--test", type=Path, default=data.DEFAULT_TEST, help="test npz with X (default: the embedded test tiles)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("submission.csv"),
        help="CSV to write; its JSON log goes beside it, same name ending in .json (default: %(default)s)",
    )
    p.add_argument("--truth", type=Path, help="index,count CSV of true counts: print MAE and bias")
    p.add_argument(
        "--refit", action="store_true", help="retrain each model's configuration on train + validation tiles first"
    )
    p.add_argument("--tta", action="store_true", help="average each model's predictions over flips and rotations")
    return p.parse_args(argv)


@dataclass
class Member:
    """One model of a submission: a complete trial of the search or of its finalist study."""

    study: optuna.Study  # the study the trial belongs to
    trial: optuna.trial.FrozenTrial

    @property
    def label(self) -> str:
        return finalists.trial_label(self.trial)


@dataclass
class Choice:
    """What a submission exports: the models whose counts are averaged, and why them."""

    members: list[Member]
    source: int  # the search trial whose configuration the models share
    what: str  # e.g. "trial 3 alone", "the ensemble of trial 3's 2 runs"
    val_mae: float  # the validation count-MAE of exactly what is exported


def pick_trial(study: optuna.Study, number: int | None) -> optuna.trial.FrozenTrial:
    """The best finished trial, or trial ``number`` if it finished."""
    complete = {t.number: t for t in study.get_trials(deepcopy=False, states=(COMPLETE,))}
    if not complete:
        raise UsageError(f"study {study.study_name!r} has no finished trial yet: run python -m search.study first")
    if number is None:
        return study.best_trial
    if number not in complete:
        raise UsageError(f"trial {number} of study {study.study_name!r} did not finish (finished: {sorted(complete)})")
    return complete[number]


def single(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Choice:
    return Choice([Member(study, trial)], trial.number, f"trial {trial.number} alone", trial.value)


def ensemble(study: optuna.Study, finalist: finalists.Finalist) -> Choice:
    """The finalist's runs as one ensemble; its validation MAE is that of the rounded mean count."""
    staged = finalists.open_finalists(study)
    members = [Member(staged, run) for run in finalist.runs]
    seeds = ", ".join(map(str, finalist.run_seeds))
    what = f"the ensemble of trial {finalist.trial}'s {len(members)} runs (seeds {seeds})"
    return Choice(members, finalist.trial, what, stats.ensemble_mae(finalist.errors))


def choose(study: optuna.Study, trial: int | None, finalist: int | None) -> Choice:
    """The models to export: ``--trial``, ``--finalist``, else the winning finalist, else the best trial."""
    if trial is not None:
        return single(study, pick_trial(study, trial))
    staged = [f for f in finalists.results(study) if f.runs]
    if finalist is not None:
        match = [f for f in staged if f.trial == finalist]
        if not match:
            raise UsageError(
                f"trial {finalist} of study {study.study_name!r} is no finalist with a finished run "
                f"(finalists with runs: {[f.trial for f in staged]}); use --trial to export it alone"
            )
        return ensemble(study, match[0])
    verdict = seed_verdict(staged, study.user_attrs.get("val_groups", []))
    if verdict is None:
        best = single(study, pick_trial(study, None))
        print(f"no finalist run has finished: exporting {best.what} (run python -m search.study to train them)")
        return best
    return ensemble(study, verdict["winner"])


def check_checkpoint(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, config: dict, test_path: Path, images: np.ndarray
) -> None:
    """Refuse a checkpoint that another study or trial wrote, or test tiles of another size.

    A checkpoint records its study folder, trial number, parameters and training tile size
    (``search.objective.checkpoint_record``); a folder overwritten by another study, or a copied
    one, would otherwise be exported with exit code 0.
    """
    missing = [k for k in ("tile_size", "train") if k not in config]
    if missing:
        raise UsageError(f"checkpoint {trial.user_attrs['checkpoint']}: config.json lacks {', '.join(missing)}")
    recorded = (config.get("study_folder"), config.get("trial"), config.get("params"))
    if recorded != (study.user_attrs.get(FOLDER_ATTR), trial.number, trial.params):
        raise UsageError(
            f"checkpoint {trial.user_attrs['checkpoint']} does not belong to trial {trial.number} of "
            f"study {study.study_name!r} (it records trial {config.get('trial')} of "
            f"{config.get('study_folder')}); run the trial again or export another one"
        )
    tile = list(images.shape[1:])
    if tile != config["tile_size"]:
        raise data.DataError(
            test_path,
            f"tiles are {tile[0]}x{tile[1]}, but trial {trial.number} was trained "
            f"on {config['tile_size'][0]}x{config['tile_size'][1]} tiles",
        )


def open_checkpoint(member: Member, project: Path, device) -> tuple:
    """The member's net, checkpoint config and where they were read from.

    Its checkpoint folder, under ``project`` (:func:`search.artifacts.project_dir`); when a file
    of it is missing here (trained on another machine, or deleted), the copy uploaded to the
    study's artifact store, checked against the same SHA-256.
    """
    folder = project / member.trial.user_attrs.get("checkpoint", "")
    missing = [folder / name for name in (CONFIG, WEIGHTS) if not (folder / name).is_file()]
    if not missing:
        return *load_checkpoint(folder, device), folder
    try:
        config, weights, names = read_checkpoint_artifacts(
            member.study, member.trial, project / artifact_dir(member.study)
        )
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint file missing: {missing[0]}, and {exc}") from None
    return *checkpoint_from_bytes(config, weights, names, device), names[1]


def load_member(member: Member, project: Path, test_path: Path, images: np.ndarray, device) -> tuple:
    """The member's net, checkpoint config and its source, checked to belong to its trial and fit the test tiles."""
    try:
        net, config, source = open_checkpoint(member, project, device)
    except CheckpointError as exc:
        raise UsageError(f"{member.label}: {exc}") from None
    check_checkpoint(member.study, member.trial, config, test_path, images)
    return net, config, source


def refit(study: optuna.Study, member: Member, config: dict, folder: Path, device) -> tuple:
    """Retrain the member's configuration, with its seed, on every training tile; saved in ``folder``/refit."""
    meta = study.user_attrs
    train_path = Path(meta["train_path"])
    if data.fingerprint(train_path) != meta["train_fingerprint"]:
        raise UsageError(f"{train_path} changed since the study started; cannot refit on the same data")
    images, masks, points = data.load_train_or_dots(train_path)
    train = TrainConfig(**config["train"])
    unet = UNetConfig(**config["unet"])
    net = seeded_net(unet, train.seed, device)
    # A dots study's targets are disks of the radius its checkpoint's trial trained with.
    targets = "" if masks is not None else f" (disks of radius {config['params'][space.RADIUS]} px at the dots)"
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
    path = out.with_suffix(".json")
    if path == out:
        raise UsageError(f"--out {out}: the submission is a CSV and its log is written to {path}; give a .csv name")
    return path


def export(args) -> dict:
    # Both outputs are checked before a refit, not after it.
    log_file = cli.check_output_file(log_path(cli.check_output_file(args.out, "--out")), "--out's log")
    check_study_name(args.study_name)  # it names files: studies/<name>.db
    storage_url = given_storage(args.storage) or find_storage(args.study_name)
    study = load_existing_study(args.study_name, storage_url)
    choice = choose(study, args.trial, args.finalist)
    images = data.load_test(args.test)
    truth = data.load_counts_csv(args.truth, n=len(images)) if args.truth else None
    device = cli.resolve_device(args.device)
    project = project_dir(study.user_attrs, storage_url)
    # Every checkpoint is checked before any is refitted: a bad member must not cost the others' training.
    loaded = [load_member(m, project, args.test, images, device) for m in choice.members]
    counts, logged = [], []
    for member, (net, config, checkpoint) in zip(choice.members, loaded):
        if args.refit:
            folder = project / member.trial.user_attrs["checkpoint"]
            net, checkpoint = refit(study, member, config, folder, device)
        counting = member.trial.user_attrs["counting"]
        counts.append(count_setting(predict_prob(net, images, tta=args.tta), counting))
        logged.append(
            {
                "run": member.label,
                "study": member.study.study_name,
                "trial": member.trial.number,
                "seed": config["train"]["seed"],
                "val_count_mae": member.trial.value,
                "counting": counting,
                "checkpoint": str(checkpoint),
            }
        )
    final = stats.ensemble_counts(np.stack(counts))
    submission = pd.DataFrame({"index": np.arange(len(final)), "count": final})
    atomic_write(args.out, lambda p: submission.to_csv(p, index=False))

    source = choice.members[0].trial
    log = {
        "study": args.study_name,
        "storage": safe_url(storage_url),
        "exported": choice.what,
        "trial": choice.source,
        "val_count_mae": choice.val_mae,
        "params": source.params,
        "members": logged,
        **({"counting": logged[0]["counting"]} if len(logged) == 1 else {}),
        "refit": args.refit,
        "tta": args.tta,
        "test": str(args.test),
        "test_fingerprint": data.fingerprint(args.test),
        "n_test": len(images),
        "submission": str(args.out),
    }
    print(
        f"exported {choice.what}: val MAE {choice.val_mae:.3f}{', refit' if args.refit else ''}"
        f"{', TTA' if args.tta else ''}; wrote {len(final)} counts to {args.out}"
    )
    if truth is not None:
        error = final - truth
        log.update(truth=str(args.truth), test_mae=float(np.abs(error).mean()), test_bias=float(error.mean()))
        log["member_test_mae"] = [float(np.abs(c - truth).mean()) for c in counts]
        print(f"against {args.truth}: MAE {log['test_mae']:.3f}, bias {log['test_bias']:+.3f}")
    atomic_write(log_file, lambda p: p.write_text(json.dumps(log, indent=2)))
    return log


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run_command(lambda: export(args))


if __name__ == "__main__":
    sys.exit(main())
