"""Count the cells of whole images of any size with a study's models: one count per image.

    python -m search.predict IMAGES --out counts.csv
    python -m search.predict IMAGES --finalist 0 --overlays overlays/
    python -m search.predict IMAGES --masks MASKS --out counts.csv   # and score against true counts

IMAGES is a folder of images (or one image file), read as ``python -m data.importer`` reads
them (8 or 16 bits, grey or colour) and rescaled as the study's training images were
imported. Each model of the study's choice (the one ``search.export`` would write, or
``--trial``/``--finalist``) predicts the whole image through overlapping windows of its
tile size, blended where they overlap (``model.stitch``), and counts the whole map with the
counting setting its run chose; the image's count is the models' counts weighted and counted as
the export's, with an interval from the out-of-fold images' summed residuals (``--interval``).
Every input is read and checked before the first prediction, and the CSV is written at the
end, at once: bad input is one line and exit code 2, with nothing written.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import data
from data.annotations import annotation_counts, read_image_counts
from data.folders import IMAGE_SUFFIXES, image_files
from data.images import read_scaled
from model.checkpoint import atomic_write
from model.count import LOCATORS, count_setting, object_centroids
from model.infer import predict_prob
from model.plots import count_overlay_png, count_scatter_figure, save_png
from model.stitch import stitch_predict
from search import cli, members
from search.errors import UsageError
from search.runtime.artifacts import project_dir, training_file
from search.runtime.storage import check_study_name, find_storage, given_storage, load_existing_study

# Windows per forward pass: bounds the memory of one pass (activations of 32 128x128 windows).
BATCH_SIZE = 32


def _positive(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = cli.parser(
        "python -m search.predict",
        "Count the cells of whole images of any size with a study's models; write image,count.",
        "studies/<name>.db, or studies/<name>.journal.log when only that exists",
    )
    p.add_argument(
        "images", type=Path, metavar="IMAGES", help=f"a folder of images ({' '.join(IMAGE_SUFFIXES)}) or one image"
    )
    models = p.add_argument_group("models")
    cli.add_model_choice(models, "count with")
    cli.add_interval(models)
    output = p.add_argument_group("images and output")
    output.add_argument("--out", type=Path, default=Path("counts.csv"), help="CSV to write (default: %(default)s)")
    output.add_argument(
        "--scale",
        type=_positive,
        metavar="F",
        help="rescale every image by F (default: as the study's training images were imported, else 1)",
    )
    output.add_argument("--overlays", type=Path, metavar="DIR", help="write each image with its counted cells marked")
    truth = p.add_argument_group("true counts (any one)").add_mutually_exclusive_group()
    truth.add_argument("--truth", type=Path, metavar="CSV", help="true counts, a CSV of image,count")
    truth.add_argument("--masks", type=Path, metavar="DIR", help="true counts from instance label masks")
    truth.add_argument("--dots", type=Path, metavar="DIR", help="true counts from dots images (may be IMAGES)")
    return p.parse_args(argv)


def read_inputs(args) -> tuple[dict, dict | None, list[Path]]:
    """The images to count, their true counts when given, and every input file and folder.

    Returns ``(files, truth, inputs)``: image paths by stem; true counts by stem, or None;
    the paths no output may overwrite.
    """
    inputs = [args.images]
    if args.masks or args.dots:
        if not args.images.is_dir():
            raise UsageError(f"--masks and --dots pair a folder of images with theirs; {args.images} is no folder")
        kind, folder = ("mask", args.masks) if args.masks else ("dots", args.dots)
        counted = annotation_counts(args.images, folder, kind)
        return {p.stem: p for p in counted}, {p.stem: n for p, n in counted.items()}, [*inputs, folder]
    files = image_files(args.images)
    if args.truth:
        counts, unused = read_image_counts(args.truth, files)
        if unused:  # a table shared by more images than these: theirs are scored, the rest said
            print(f"--truth {args.truth}: {unused} rows name no image in {args.images}; not used", flush=True)
        return files, counts, [*inputs, args.truth]
    return files, None, inputs


def check_outputs(outputs: list[tuple[Path, str]], overlays: Path | None, inputs: list[Path], files: dict) -> None:
    """Refuse an output that would overwrite an input, or overlays written into an input folder."""
    taken = {p.resolve() for p in [*inputs, *files.values()]}
    for path, option in outputs:
        if path.resolve() in taken:
            raise UsageError(f"{option} {path}: is an input; give another name")
    if overlays is not None and overlays.resolve() in taken | {p.parent.resolve() for p in files.values()}:
        raise UsageError(f"--overlays {overlays}: is an input folder; give another folder")


def training_scale(attrs: dict, project: Path, override: float | None) -> tuple[float, str]:
    """The rescale factor of the images, and where it comes from.

    ``--scale``, else the factor the importer recorded for the study's training images (the
    median when they differ), else 1 for a training file without one (the competition's,
    the embedded set). The training file is the study's (``attrs``, its user attributes), found
    from its ``project`` folder (:func:`search.runtime.artifacts.training_file`).
    """
    if override is not None:
        return override, "--scale"
    if "train_path" not in attrs:
        return 1.0, "the study records no training file"
    path = training_file(attrs, project, "give --scale, the factor its images were imported with (1 if none)")
    scales = data.load_scales(path)
    if scales is None:
        return 1.0, f"{path} records no rescaling"
    if np.ptp(scales) == 0:
        return float(scales[0]), f"as {path}'s images were imported"
    return float(np.median(scales)), (
        f"the median of {path}'s {len(scales)} images' factors ({scales.min():.3g}-{scales.max():.3g}); "
        "--scale overrides"
    )


def open_models(choice: members.Choice, project: Path, device, overlays: Path | None) -> list[tuple]:
    """Each chosen model as ``(predict windows, tile side, counting setting)``, checked to be its trial's.

    A model predicts as it trained (its checkpoint's loss): a density net's output is its
    density map, which its ``density`` counting sums, not logits of probabilities.
    """
    models = []
    for member in choice.members:
        net, config, _ = members.open_member(member, project, device)
        setting = member.trial.user_attrs["counting"]
        if overlays is not None and setting["counter"] not in LOCATORS:
            raise UsageError(f"--overlays: {member.label} counts with {setting['counter']!r}, which marks no cells")
        windows = functools.partial(predict_prob, net, loss=config["train"]["loss"])
        models.append((windows, config["tile_size"][0], setting))
    return models


def count_image(image: np.ndarray, models: list, with_marks: bool, choice: members.Choice, level: float) -> tuple:
    """The ensemble's count of one whole image, its interval or None, and, if asked, where one model's cells are.

    The models' counts become the image's count and interval as :func:`search.members.blend_counts`
    says for an image of its area in tiles; its residuals are always scaled by the count (a tile's
    residuals say nothing of a larger count's). The marks are those of the model whose own count
    is nearest the ensemble's.
    """
    counts, marks = [], []
    for windows, tile, setting in models:
        prob = stitch_predict(image, windows, tile, BATCH_SIZE)
        counts.append(int(count_setting(prob, setting)[0]))
        if with_marks:
            marks.append(object_centroids(prob, setting))
    area = image.size / models[0][1] ** 2
    final, bounds = members.blend_counts(choice, np.array(counts)[:, None], level, area, whole=True)
    final, bounds = final[0], None if bounds is None else (int(bounds[0][0]), int(bounds[1][0]))
    return final, bounds, marks[int(np.argmin(np.abs(np.array(counts) - final)))] if with_marks else None


def coverage_text(table: pd.DataFrame, true: np.ndarray) -> str:
    """``"; intervals cover 90.0% (mean width 12.3)"`` of a table with intervals, else ``""``."""
    if "low" not in table:
        return ""
    covered = (table["low"] <= true) & (true <= table["high"])
    return f"; intervals cover {covered.mean():.1%} (mean width {(table['high'] - table['low']).mean():.1f})"


def predict(args) -> pd.DataFrame:
    out = cli.check_output_file(args.out, "--out")
    given_truth = args.truth or args.masks or args.dots
    outputs = [(out, "--out")]
    if given_truth:
        scatter = cli.check_output_file(cli.beside(out, ".png", "the scatter plot"), "--out's scatter plot")
        outputs.append((scatter, "--out's scatter plot"))
    overlays = cli.check_output_dir(args.overlays, "--overlays") if args.overlays else None
    files, truth, inputs = read_inputs(args)
    check_outputs(outputs, overlays, inputs, files)

    check_study_name(args.study_name)  # it names files: studies/<name>.db
    storage_url = given_storage(args.storage) or find_storage(args.study_name)
    study = load_existing_study(args.study_name, storage_url)
    cli.check_spares_study({option: path for path, option in outputs} | {"--overlays": overlays}, storage_url, study)
    choice = members.choose(study, args.trial, args.finalist)
    device = cli.resolve_device(args.device)
    project = project_dir(study.user_attrs, storage_url)
    models = open_models(choice, project, device, overlays)
    scale, why = training_scale(study.user_attrs, project, args.scale)
    print(f"counting {len(files)} images with {choice.what}; scale {scale:g} ({why})", flush=True)
    # Every image read once before any is predicted: a bad one at the end must not waste the rest.
    for path in files.values():
        read_scaled(path, scale)

    rows = []
    for i, path in enumerate(files.values(), start=1):
        started = time.perf_counter()
        image = read_scaled(path, scale)
        count, bounds, marks = count_image(image, models, overlays is not None, choice, args.interval)
        rows.append((path.name, count, *(bounds or ())))
        true = "" if truth is None else f", true {truth[path.stem]} ({count - truth[path.stem]:+g})"
        true += "" if bounds is None else f"; interval {bounds[0]}-{bounds[1]}"
        if overlays is not None:
            caption = f"{path.name}: {count} cells" + ("" if len(marks) == count else f" ({len(marks)} marked)")
            png = count_overlay_png(image, marks, caption)
            atomic_write(overlays / f"{path.stem}.png", lambda p, png=png: p.write_bytes(png))
        h, w = image.shape
        print(
            f"[{i}/{len(files)}] {path.name} ({w}x{h} px): {count} cells{true} ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    table = pd.DataFrame(rows, columns=["image", "count", "low", "high"][: len(rows[0])])
    atomic_write(out, lambda p: table.to_csv(p, index=False))
    print(f"wrote {len(table)} counts to {out}" + (f" and {len(table)} overlays to {overlays}" if overlays else ""))
    if truth is not None:
        true = np.array([truth[Path(name).stem] for name in table["image"]])
        error = table["count"].to_numpy() - true
        figure = count_scatter_figure(true, table["count"].to_numpy(), f"{choice.what} on {given_truth}", "images")
        atomic_write(scatter, lambda p: save_png(figure, p))
        print(
            f"against {given_truth}: MAE {np.abs(error).mean():.3f}, bias {error.mean():+.3f} "
            f"over {len(error)} images{coverage_text(table, true)}; scatter plot {scatter}"
        )
    return table


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run_command(lambda: predict(args))


if __name__ == "__main__":
    sys.exit(main())
