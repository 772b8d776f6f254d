"""Turn a folder of microscopy images and their annotations into the harness's tiles.

    python -m data.importer IMAGES --masks MASKS --out train.npz
    python -m data.importer IMAGES --dots DOTS --out train.npz --scale 0.5
    python -m data.importer IMAGES --dots-csv dots.csv --out test.npz --counts-csv test_counts.csv
    python -m data.importer IMAGES --out test.npz --scale 0.5

Every image is rescaled, cut into square windows and each window's cells counted by
the rule of the embedded set: a cell counts for a tile when its centroid on the whole
image lies inside it. Images without annotation are only rescaled and cut: the tiles of a
test set to predict. Bad input is one line naming the file and exit code 2, and then
nothing is written. See ``python -m data.importer --help`` for every rule.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from .errors import DataError, check_distinct_outputs
from .files import check_output, counts_csv, write_files
from .folders import IMAGE_SUFFIXES, list_images
from .images import MAX_PIXELS
from .load import SIZE_MULTIPLE
from .sources import csv_sources, dots_sources, image_sources, import_tiles, mask_sources
from .tiling import KEEP_RATIO, OBJECT_SIZE

__all__ = ["main"]

RULES = f"""\
layouts:
  --masks DIR      instance label images (0 = background, one id per cell), the image's file
                   stem in another folder (StarDist/Cellpose), e.g. images/a.png + masks/a.tif;
                   a binary mask (one value, 0/1 or 0/255, in separate blobs) has one cell per
                   blob of touching pixels, and the importer says so; a palette PNG's ids are
                   its palette indices, and float masks must hold whole numbers
  --dots DIR       dots images, one dot per cell (in a grey PNG, TIFF or BMP every non-zero
                   pixel, so label values 1..K all count; in a colour image or a JPEG pixels
                   over half the brightest one; touching dot pixels are one dot), the image's
                   stem in another folder, or named 001cell.png -> 001dots.png (VGG) or
                   NAME_000.png -> NAME_dots_000.png (bone marrow), in any folder, the images'
                   one included
  --dots-csv FILE  CSV with columns image,row,col, one row per cell: image is the file name or
                   stem, row and col pixel indices (fractions allowed; pixel centres at whole
                   numbers: an H-row image spans rows -0.5 to under H - 0.5, same for columns,
                   and a dot outside is refused); two rows of one image at the same row and
                   col are refused as copies (a copied row would count its cell twice)
  none of them     images only, for a test set to predict (search.export --test): no counts,
                   points or y; --scale F, default 1 (no annotation, no cell size to rescale
                   by: give the --scale its training images got)
  Files ending {", ".join(IMAGE_SUFFIXES)} are read; hidden and other files are skipped.

rules:
  grey        colour images become the maximum over their colour channels (a nucleus stained
              in one channel keeps its contrast; luminance would dim blue to 11%); alpha is
              dropped. 8-bit values are kept; 16-bit and float images are stretched linearly,
              their 0.1th-99.9th percentiles to 0-255 (their minimum-maximum when those
              percentiles are equal: a few cells on a dark image).
  rescale     with masks, an image whose median cell (equivalent diameter) is over
              {KEEP_RATIO:.3g} x --object-size ({KEEP_RATIO * OBJECT_SIZE:g} px by default; the embedded set's
              nuclei are 8-14 px) is shrunk to --object-size by area averaging; the
              others are kept (never enlarged). Dots carry no size: only --scale F rescales
              them. --scale F applies F to every image (above 1 enlarges, bilinearly).
              Centroids are rescaled with the pixels; one in an edge's outer half pixel
              is clipped into the image, not lost. An image over {MAX_PIXELS / 2**20:g} Mi pixels as
              read or as rescaled is refused (as search.predict refuses it), and so is one
              a factor shrinks to under {SIZE_MULTIPLE}x{SIZE_MULTIPLE} px (the smallest tile).
  windows     --tile square windows, stride one tile, the last flush with the far edge
              (overlapping the previous); an image smaller than a tile is padded with black
              at the bottom/right (masks with 0).
  counting    a cell counts for every window holding its centroid (row in [r0, r0+T), same
              for columns), computed on the whole rescaled image: mask pixel centroid, or dot.
  empty       a mask without instance, a dots image without dot, or an image without CSV
              row is refused, unless --allow-empty (then the image has no cells); so is an
              all-black image (a flat 16-bit one too) whose annotation has cells.
  outputs     --out and --counts-csv must differ from each other, from --dots-csv and from
              the images read (resolved paths): refused, nothing written.

output npz:
  X (N,T,T) uint8; y (N,T,T) float32 soft masks, the fraction of each pixel covered (masks
  only: a dots-only file has no y; the study trains on disks or density maps drawn at its
  points); counts (N,) int32;
  points (M,3) float32 rows (tile, row, col) in tile coordinates, the cell centres (instance
  centroids or dots; none from binary masks, whose blobs merge touching cells): with masks
  the study also searches targets drawn at them; groups (N,) int32, the source image;
  names (I,) its file name; scale (I,) float32 its rescale factor.
  A test set is imported the same way: search.export --test reads its X, and --counts-csv
  writes its true counts as index,count for search.export --truth. Without annotation the
  file has X, groups, names and scale only.
"""


def scale_summary(scales):
    """One line on the rescale factors of the images."""
    kept = np.isclose(scales, 1.0)
    changed = scales[~kept]
    line = f"scale: {kept.sum()} images at 1"
    if len(changed):
        low, mid, high = np.percentile(changed, [0, 50, 100])
        line += f", {len(changed)} rescaled by {low:.3g}-{high:.3g} (median {mid:.3g})"
    return line


def _tile_size(text):
    tile = int(text)
    if tile < SIZE_MULTIPLE or tile % SIZE_MULTIPLE:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of {SIZE_MULTIPLE} (the U-Net halves it 4x)")
    return tile


def _positive(text):
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def parse_args(argv=None):
    """The importer's command line."""
    p = argparse.ArgumentParser(
        prog="python -m data.importer",
        description="Cut a folder of microscopy images and their cell annotations into tiles\n"
        "with per-tile counts, in the harness's npz layout; images alone into tiles to predict.",
        epilog=RULES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", type=Path, metavar="IMAGES_DIR", help="folder of images")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--masks", type=Path, metavar="DIR", help="folder of instance label masks")
    layout.add_argument("--dots", type=Path, metavar="DIR", help="folder of dots images (may be IMAGES_DIR)")
    layout.add_argument("--dots-csv", type=Path, metavar="FILE", help="CSV of image,row,col, one row per cell")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="npz file to write, e.g. train.npz")
    p.add_argument("--counts-csv", type=Path, metavar="FILE", help="also write the tiles' counts as index,count")
    p.add_argument("--tile", type=_tile_size, default=128, help="window side in pixels (default: %(default)s)")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--scale", type=_positive, metavar="F", help="rescale every image by F (without annotation: default 1)"
    )
    size.add_argument(
        "--object-size",
        type=_positive,
        metavar="PX",
        help=f"with --masks: median cell diameter to shrink to (default: {OBJECT_SIZE:g})",
    )
    p.add_argument("--allow-empty", action="store_true", help="accept annotations without any cell")
    args = p.parse_args(argv)
    if args.object_size is not None and args.masks is None:
        p.error("--object-size needs --masks: dots carry no cell size (use --scale)")
    if args.masks is None and args.dots is None and args.dots_csv is None:
        unused = [o for o, v in (("--counts-csv", args.counts_csv), ("--allow-empty", args.allow_empty)) if v]
        if unused:
            p.error(f"{unused[0]} needs an annotation (--masks, --dots or --dots-csv): images alone have no cells")
    return args


def input_files(args):
    """Every file the import of `args` reads, by what names it: the dots CSV and the folders' images."""
    files = {"--dots-csv": args.dots_csv}
    for option, folder in (("IMAGES_DIR", args.images), ("--masks", args.masks), ("--dots", args.dots)):
        if folder is not None:
            files |= {f"{path.name} in {option}": path for path in list_images(folder).values()}
    return files


def run(args):
    """Import as `args` say, write the outputs and print a summary."""
    out = check_output(args.out)
    csv_out = None if args.counts_csv is None else check_output(args.counts_csv)
    check_distinct_outputs({"--out": out, "--counts-csv": csv_out}, input_files(args))
    if args.masks is not None:
        kind, sources = "masks", mask_sources(args.images, args.masks, args.allow_empty)
    elif args.dots is not None:
        kind, sources = "dots", dots_sources(args.images, args.dots, args.allow_empty)
    elif args.dots_csv is not None:
        kind, sources = "dots CSV", csv_sources(args.images, args.dots_csv, args.allow_empty)
    else:
        kind, sources = "no annotation", image_sources(args.images)
    arrays = import_tiles(sources, args.tile, args.scale, args.object_size or OBJECT_SIZE)
    outputs = {out: lambda f: np.savez_compressed(f, **arrays)}
    if csv_out is not None:
        outputs[csv_out] = lambda f: f.write(counts_csv(arrays["counts"]).encode())
    write_files(outputs)
    n, tile = len(arrays["X"]), args.tile
    cells = f", {arrays['counts'].sum()} cells" if "counts" in arrays else ""
    print(f"{len(arrays['names'])} images ({kind}) -> {n} tiles of {tile}x{tile}{cells}")
    print(scale_summary(arrays["scale"]))
    missing = "" if "y" in arrays else " (no masks: no y)" if "counts" in arrays else " (no annotation: X only)"
    if "y" in arrays and "points" not in arrays:
        missing = " (binary masks: no cell centres, no points; a study trains from the masks alone)"
    print("wrote " + ", ".join(map(str, outputs)) + missing)


def main(argv=None):
    """Run the importer; bad input is one line on stderr and exit code 2, Ctrl-C exit 130."""
    args = parse_args(argv)
    try:
        run(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
