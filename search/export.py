"""Turn a study's best trial (or a chosen one) into a competition submission CSV.

    python -m search.export                         # best trial of study 'cells' -> submission.csv
    python -m search.export --truth data/embedded/test_counts.csv
    python -m search.export --refit --tta --out submission.csv

The trial's checkpoint predicts the test tiles and its counting setting counts them. ``--refit``
first retrains the trial's configuration on all training tiles (train + validation); ``--tta``
averages predictions over the 8 flips/rotations. The run is logged beside the CSV as JSON.
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
from model.checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from model.count import count_setting
from model.train import TrainConfig, fit, predict_prob, seeded_net
from model.unet import UNetConfig
from search import cli
from search.artifacts import FOLDER_ATTR
from search.errors import UsageError
from search.storage import check_study_name, find_storage, given_storage, load_existing_study, safe_url


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.parser(
        "python -m search.export",
        "Write submission.csv (index,count) from a study's best trial.",
        "studies/<name>.db, or studies/<name>.journal.log when only that exists",
    )
    p.add_argument("--trial", type=int, help="export this trial number instead of the best one")
    p.add_argument(
        "--test", type=Path, default=data.DEFAULT_TEST, help="test npz with X (default: the embedded test tiles)"
    )
    p.add_argument("--out", type=Path, default=Path("submission.csv"), help="CSV to write (default: %(default)s)")
    p.add_argument("--truth", type=Path, help="index,count CSV of true counts: print MAE and bias")
    p.add_argument(
        "--refit", action="store_true", help="retrain the trial's configuration on train + validation tiles first"
    )
    p.add_argument("--tta", action="store_true", help="average predictions over flips and rotations")
    return p.parse_args(argv)


def pick_trial(study: optuna.Study, number: int | None) -> optuna.trial.FrozenTrial:
    """The best finished trial, or trial ``number`` if it finished."""
    complete = {t.number: t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))}
    if not complete:
        raise UsageError(f"study {study.study_name!r} has no finished trial yet: run python -m search.study first")
    if number is None:
        return study.best_trial
    if number not in complete:
        raise UsageError(f"trial {number} of study {study.study_name!r} did not finish (finished: {sorted(complete)})")
    return complete[number]


def check_checkpoint(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, config: dict, test_path: Path, images: np.ndarray
) -> None:
    """Refuse a checkpoint that another study or trial wrote, or test tiles of another size.

    A checkpoint records its study folder, trial number, parameters and training tile size
    (``search.objective.checkpoint_record``); a folder overwritten by another study, or a copied
    one, would otherwise be exported with exit code 0.
    """
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


def refit(study: optuna.Study, trial: optuna.trial.FrozenTrial, config: dict, device) -> tuple:
    """Retrain the trial's configuration on every training tile (train and validation)."""
    meta = study.user_attrs
    train_path = Path(meta["train_path"])
    if data.fingerprint(train_path) != meta["train_fingerprint"]:
        raise UsageError(f"{train_path} changed since the study started; cannot refit on the same data")
    images, masks = data.load_train(train_path)
    train = TrainConfig(**config["train"])
    unet = UNetConfig(**config["unet"])
    net = seeded_net(unet, train.seed, device)
    print(
        f"refit: trial {trial.number}'s configuration on all {len(images)} tiles for {train.epochs} epochs", flush=True
    )
    result = fit(
        net,
        train,
        images,
        masks,
        on_epoch=lambda r: print(
            f"  refit epoch {r.epoch}/{train.epochs}: train loss {r.train_loss:.4f} ({r.seconds:.1f} s)", flush=True
        ),
    )
    directory = save_checkpoint(
        Path(trial.user_attrs["checkpoint"]) / "refit", result.state_dict, unet, {**config, "refit": True}
    )
    net.load_state_dict(result.state_dict)
    return net.eval(), directory


def export(args) -> dict:
    cli.check_output_file(args.out, "--out")  # before a refit, not after it
    check_study_name(args.study_name)  # it names files: studies/<name>.db
    storage_url = given_storage(args.storage) or find_storage(args.study_name)
    study = load_existing_study(args.study_name, storage_url)
    trial = pick_trial(study, args.trial)
    images = data.load_test(args.test)
    truth = data.load_counts_csv(args.truth, n=len(images)) if args.truth else None
    device = cli.resolve_device(args.device)
    try:
        net, config = load_checkpoint(trial.user_attrs.get("checkpoint", ""), device)
    except CheckpointError as exc:
        raise UsageError(f"trial {trial.number}: {exc}") from None
    check_checkpoint(study, trial, config, args.test, images)
    checkpoint = trial.user_attrs["checkpoint"]
    if args.refit:
        net, checkpoint = refit(study, trial, config, device)
    counting = trial.user_attrs["counting"]
    counts = count_setting(predict_prob(net, images, tta=args.tta), counting)
    submission = pd.DataFrame({"index": np.arange(len(counts)), "count": counts})
    atomic_write(args.out, lambda p: submission.to_csv(p, index=False))

    log = {
        "study": args.study_name,
        "storage": safe_url(storage_url),
        "trial": trial.number,
        "val_count_mae": trial.value,
        "params": trial.params,
        "counting": counting,
        "checkpoint": str(checkpoint),
        "refit": args.refit,
        "tta": args.tta,
        "test": str(args.test),
        "test_fingerprint": data.fingerprint(args.test),
        "n_test": len(images),
        "submission": str(args.out),
    }
    print(
        f"trial {trial.number} (val MAE {trial.value:.3f}, {trial.user_attrs['counting_name']}"
        f"{', refit' if args.refit else ''}{', TTA' if args.tta else ''}): wrote {len(counts)} counts to {args.out}"
    )
    if truth is not None:
        error = counts - truth
        log.update(truth=str(args.truth), test_mae=float(np.abs(error).mean()), test_bias=float(error.mean()))
        print(f"against {args.truth}: MAE {log['test_mae']:.3f}, bias {log['test_bias']:+.3f}")
    log_path = args.out.with_suffix(".json")
    atomic_write(log_path, lambda p: p.write_text(json.dumps(log, indent=2)))
    return log


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run_command(lambda: export(args))


if __name__ == "__main__":
    sys.exit(main())
