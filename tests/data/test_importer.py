"""Tests for ``python -m data.importer`` on small image folders built here."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import disc_labels
from PIL import Image

import data
from data import load_counts_csv, load_test, load_tile_ints, load_train, load_train_or_dots
from data.importer import main

T = 32  # tile side of most tests: small images stay fast
REPO = Path(__file__).resolve().parents[2]  # `python -m data.importer` runs this checkout's package


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array), path
    return path


def _image_of(labels):
    """A fluorescence-like image: bright cells on a dark background."""
    return np.where(labels > 0, 200, 20).astype(np.uint8)


def _masks_set(root, images):
    """Write ``{stem: labels}`` as root/images/stem.png + root/masks/stem.tif."""
    for stem, labels in images.items():
        _write(root / "images" / f"{stem}.png", _image_of(labels))
        _write(root / "masks" / f"{stem}.tif", labels)
    return root / "images", root / "masks"


def _import(*args, tile=T):
    return main([str(a) for a in args] + ["--tile", str(tile)])


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


# --- windows and the centroid rule ------------------------------------------


def rect_labels(shape, rects):
    """Instance labels of axis-aligned rectangles ``(r0, r1, c0, c1)``, inclusive."""
    labels = np.zeros(shape, np.uint16)
    for i, (r0, r1, c0, c1) in enumerate(rects, start=1):
        labels[r0 : r1 + 1, c0 : c1 + 1] = i
    return labels


def test_centroid_rule_at_tile_edges(tmp_path):
    # 64x64 with tile 32: windows at rows/cols 0 and 32. Centroid rows:
    # 31.5 (cut by the edge, just inside the top), 32.0 (on the edge: the
    # bottom window), 31.0 (just inside the top, one row in the bottom).
    labels = rect_labels((64, 64), [(31, 32, 4, 6), (31, 33, 14, 16), (30, 32, 24, 26)])
    images, masks = _masks_set(tmp_path, {"a": labels})
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz") == 0
    out = _npz(tmp_path / "o.npz")
    # Tiles row-major: (0,0), (0,32), (32,0), (32,32).
    assert out["counts"].tolist() == [2, 0, 1, 0]
    np.testing.assert_allclose(out["points"], [[0, 31.5, 5], [0, 31, 25], [2, 0, 15]])
    # The cut cell shows in both tiles but counts once.
    assert out["y"][0, 31, 5] == 1 and out["y"][2, 0, 5] == 1


def test_overlapping_windows_each_count_a_shared_cell(tmp_path):
    # 40 px with tile 32: windows at 0 and 8 overlap on rows/cols 8..31.
    labels = rect_labels((40, 40), [(10, 11, 10, 11), (36, 37, 2, 3)])
    images, masks = _masks_set(tmp_path, {"a": labels})
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz") == 0
    out = _npz(tmp_path / "o.npz")
    assert out["counts"].tolist() == [1, 1, 2, 1]


def test_tiles_are_the_image_windows_and_small_images_padded(tmp_path):
    rng = np.random.default_rng(0)
    labels = {"wide": rect_labels((20, 70), [(5, 8, 60, 65)]), "big": rect_labels((70, 45), [(1, 2, 1, 2)])}
    images, masks = _masks_set(tmp_path, labels)
    pixels = {s: rng.integers(1, 256, size=lab.shape).astype(np.uint8) for s, lab in labels.items()}
    for stem, image in pixels.items():
        _write(images / f"{stem}.png", image)
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz") == 0
    out = _npz(tmp_path / "o.npz")
    assert out["names"].tolist() == ["big.png", "wide.png"]  # sorted by stem
    big = [pixels["big"][r : r + T, c : c + T] for r in (0, 32, 38) for c in (0, 13)]
    np.testing.assert_array_equal(out["X"][:6], big)
    # 20 rows < one tile: padded with black (and uncovered mask) at the bottom.
    wide = out["X"][6:]
    assert wide.shape == (3, T, T)
    np.testing.assert_array_equal(wide[:, :20], [pixels["wide"][:, c : c + T] for c in (0, 32, 38)])
    assert not wide[:, 20:].any() and not out["y"][6:, 20:].any()
    assert out["counts"].tolist() == [1, 0, 0, 0, 0, 0, 0, 1, 1]  # col 62.5 is in two windows


def test_groups_never_mix_images(tmp_path):
    sizes = {"a": (40, 40), "b": (32, 32), "c": (20, 70)}
    images, masks = _masks_set(tmp_path, {s: rect_labels(hw, [(2, 4, 2, 4)]) for s, hw in sizes.items()})
    for i, (stem, hw) in enumerate(sizes.items()):
        _write(images / f"{stem}.png", np.full(hw, 50 * (i + 1), np.uint8))  # one grey level per image
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz") == 0
    out = _npz(tmp_path / "o.npz")
    assert out["groups"].tolist() == [0] * 4 + [1] + [2] * 3
    for tile, group in zip(out["X"], out["groups"]):
        assert set(np.unique(tile)) - {0} == {50 * (group + 1)}
    assert out["groups"].dtype == np.int32 and out["counts"].dtype == np.int32


# --- layouts ------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 255])
def test_binary_mask_counts_each_blob(tmp_path, capsys, value):
    labels = disc_labels((64, 64), [(10, 10), (10, 40), (40, 20), (50, 50)], 3)
    images, masks = _masks_set(tmp_path, {"a": labels})
    _write(masks / "a.tif", np.where(labels > 0, value, 0).astype(np.uint8))
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz", tile=64) == 0
    out = _npz(tmp_path / "o.npz")
    assert out["counts"].tolist() == [4] and out["scale"].tolist() == [1]  # 7 px cells: not shrunk
    # Blobs merge touching cells: their centroids count cells but are no centres to train on.
    assert "points" not in out and "y" in out
    printed = capsys.readouterr().out
    assert "binary mask (one value in 4 separate blobs)" in printed and "no cell centres to train on" in printed
    assert "(binary masks: no cell centres, no points; a study trains from the masks alone)" in printed


def test_masks_layout_loads_with_the_harness_loaders(tmp_path):
    labels = disc_labels((70, 50), [(10, 10), (30, 40), (60, 20), (62, 25)], 3)
    images, masks = _masks_set(tmp_path, {"one": labels, "two": labels[::-1].copy()})
    out_path = tmp_path / "train.npz"
    assert _import(images, "--masks", masks, "--out", out_path) == 0
    X, y = load_train(out_path)
    assert X.shape == y.shape == (12, T, T) and X.dtype == np.uint8 and y.dtype == np.float32
    assert 0 <= y.min() and y.max() <= 1
    counts = load_tile_ints(out_path, "counts", len(X))
    assert (load_tile_ints(out_path, "groups", len(X)) == np.repeat([0, 1], 6)).all()
    out = _npz(out_path)
    assert out["points"].dtype == np.float32 and out["points"].shape == (counts.sum(), 3)
    assert (np.bincount(out["points"][:, 0].astype(int), minlength=len(X)) == counts).all()
    np.testing.assert_array_equal(out["scale"], [1, 1])
    np.testing.assert_array_equal(load_test(out_path), X)
    # Instance masks keep their centres: a study of the file searches targets at them beside the masks.
    assert data.load_split(out_path)[0].annotation == "masks+dots"


def _dots_image(shape, dots, colour=(0, 0, 255)):
    """Black BGR image with a red (by default) pixel at each dot."""
    image = np.zeros((*shape, 3), np.uint8)
    for r, c in dots:
        image[r, c] = colour
    return image


DOTS = {"001": [(3, 4), (20, 30), (35, 10)], "002": [(5, 5)]}


@pytest.mark.parametrize(
    "layout, image_name, dots_name, same_folder",
    [
        ("vgg", "{}cell.png", "{}dots.png", True),
        ("bone marrow", "BM_{}.png", "BM_dots_{}.png", False),
        ("same stem", "{}.png", "{}.png", False),
    ],
)
def test_dots_layouts(tmp_path, layout, image_name, dots_name, same_folder):
    images = tmp_path / "cells"
    dots = images if same_folder else tmp_path / "dots"
    for key, points in DOTS.items():
        _write(images / image_name.format(key), np.full((40, 40), 30, np.uint8))
        _write(dots / dots_name.format(key), _dots_image((40, 40), points))
    out_path = tmp_path / "dots.npz"
    assert _import(images, "--dots", dots, "--out", out_path) == 0
    out = _npz(out_path)
    assert "y" not in out and out["names"].tolist() == [image_name.format(k) for k in DOTS]
    # 40 px with tile 32: windows at 0 and 8 on each axis; (20, 30) is in all four.
    assert out["counts"].tolist() == [2, 1, 2, 2, 1, 0, 0, 0]
    assert (out["groups"] == [0] * 4 + [1] * 4).all()
    np.testing.assert_array_equal(load_test(out_path), out["X"])
    assert (load_tile_ints(out_path, "counts", 8) == out["counts"]).all()
    X, y, points = load_train_or_dots(out_path)  # a study trains on disks drawn at the dots
    assert y is None and (X == out["X"]).all() and (points == out["points"]).all()


def test_dot_blob_counts_once_at_its_centroid(tmp_path):
    dots = _dots_image((40, 40), [(10, 10), (10, 11), (11, 10), (11, 11), (30, 5)], colour=(255, 255, 255))
    _write(tmp_path / "c" / "001cell.png", np.full((40, 40), 30, np.uint8))
    _write(tmp_path / "c" / "001dots.png", dots)
    assert _import(tmp_path / "c", "--dots", tmp_path / "c", "--out", tmp_path / "o.npz") == 0
    out = _npz(tmp_path / "o.npz")
    assert out["counts"][0] == 2
    np.testing.assert_allclose(out["points"][:2], [[0, 10.5, 10.5], [0, 30, 5]])


@pytest.mark.parametrize(
    "values, dtype", [(range(1, 7), np.uint8), (range(10, 70, 10), np.uint8), (range(1000, 7000, 1000), np.uint16)]
)
def test_grey_dots_image_of_label_values_counts_every_dot(tmp_path, values, dtype):
    marks = np.zeros((40, 40), dtype)
    for i, value in enumerate(values):
        marks[5 * i + 2, 3 * i + 1] = value
    _write(tmp_path / "c" / "001cell.png", np.full((40, 40), 30, np.uint8))
    _write(tmp_path / "c" / "001dots.png", marks)
    assert _import(tmp_path / "c", "--dots", tmp_path / "c", "--out", tmp_path / "o.npz") == 0
    assert _npz(tmp_path / "o.npz")["counts"][0] == 6  # before: 1-2 and 10-30, at most half the brightest, dropped


def test_dots_csv_by_file_name_or_stem(tmp_path):
    for stem in ("a", "b"):
        _write(tmp_path / "img" / f"{stem}.tif", np.full((40, 40), 30, np.uint8))
    table = tmp_path / "dots.csv"
    table.write_text("image,row,col\na.tif,3.5,4\nb,39.4,0\na,20,30\n")
    assert _import(tmp_path / "img", "--dots-csv", table, "--out", tmp_path / "o.npz") == 0
    out = _npz(tmp_path / "o.npz")
    assert out["counts"].tolist() == [2, 1, 1, 1, 0, 0, 1, 0]
    expected = [[0, 3.5, 4], [0, 20, 30], [1, 20, 22], [2, 12, 30], [3, 12, 22], [6, 31.4, 0]]
    np.testing.assert_allclose(out["points"], expected, atol=1e-5)


def test_dot_just_under_the_far_edge_stays_in_its_tile_as_float32(tmp_path):
    _write(tmp_path / "img" / "a.png", np.full((40, 40), 30, np.uint8))
    table = tmp_path / "dots.csv"
    table.write_text("image,row,col\na,3,31.99999999\n")  # col 31.99999999 of the window at 0, 23.99999999 at 8
    assert _import(tmp_path / "img", "--dots-csv", table, "--out", tmp_path / "o.npz") == 0
    X, _, points = load_train_or_dots(tmp_path / "o.npz")  # refuses a point outside its tile
    assert points[:, 0].tolist() == [0, 1] and (points[:, 1:] < T).all()


def test_dot_in_the_last_half_pixel_kept_when_enlarging(tmp_path):
    _write(tmp_path / "img" / "a.png", np.full((40, 40), 30, np.uint8))
    table = tmp_path / "dots.csv"
    table.write_text("image,row,col\na,39.4,39.4\na,-0.4,-0.4\n")
    out_path = tmp_path / "o.npz"
    assert _import(tmp_path / "img", "--dots-csv", table, "--out", out_path, "--scale", "1.5") == 0
    out = _npz(out_path)  # 60 px: windows at 0 and 28; each dot in one corner window
    assert out["counts"].tolist() == [1, 0, 0, 1]
    assert (out["points"][:, 1:] < T).all() and (out["points"][:, 1:] >= 0).all()


def test_dots_csv_edges_are_one_rule_half_a_pixel_past_each_edge_pixel_centre(tmp_path, capsys):
    # Pixel centres at whole numbers: a 40-px image spans [-0.5, 39.5) on both axes.
    _write(tmp_path / "img" / "a.png", np.full((40, 40), 30, np.uint8))
    table = tmp_path / "dots.csv"
    table.write_text("image,row,col\na,-0.4,5\na,39.4,5\na,5,-0.5\n")
    assert _import(tmp_path / "img", "--dots-csv", table, "--out", tmp_path / "o.npz") == 0
    out = _npz(tmp_path / "o.npz")  # windows at 0 and 8; the edge dots clipped into their edge pixel
    assert out["counts"].tolist() == [2, 0, 1, 0]
    np.testing.assert_allclose(out["points"], [[0, 0, 5], [0, 5, 0], [2, 31.4, 5]], atol=1e-5)
    for row, col in ((39.6, 5), (-0.6, 5), (5, 39.5)):
        table.write_text(f"image,row,col\na,{row},{col}\n")
        assert _import(tmp_path / "img", "--dots-csv", table, "--out", tmp_path / "p.npz") == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and f"dot ({row:g}, {col:g}) lies outside a.png" in err, err
    assert not (tmp_path / "p.npz").exists()


def _refused(tmp_path, capfd, *args):
    """Run the importer on `args`, check it refuses in one line and writes nothing; return the line."""
    before = sorted(tmp_path.rglob("*"))
    assert _import(*args, "--out", tmp_path / "o.npz", "--counts-csv", tmp_path / "counts.csv") == 2
    captured = capfd.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1, captured.err
    assert sorted(tmp_path.rglob("*")) == before
    return captured.err


def test_duplicate_rows_of_a_dots_csv_are_refused_naming_them(tmp_path, capfd):
    _write(tmp_path / "img" / "a.png", np.full((40, 40), 30, np.uint8))
    rows = "".join(f"a,{r},{c}\n" for r in (5, 15, 25) for c in (5, 15, 25))
    table = tmp_path / "dots.csv"
    table.write_text("image,row,col\n" + rows + rows.replace("a,", "a.png,"))  # the same 9 dots twice
    err = _refused(tmp_path, capfd, tmp_path / "img", "--dots-csv", table)
    assert "dots.csv: data rows 1 and 10 are the same dot (image a, row 5, col 5); 9 rows in all" in err, err


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--scale", "1e6", "image is 40000000x40000000 pixels rescaled by 1e+06, over the limit of 16 megapixels"),
        ("--scale", "1e-9", "image is 1x1 pixels rescaled by 1e-09, under the smallest tile (16x16 px)"),
        ("--object-size", "0.1", "image is 1x1 pixels rescaled by 0.0"),  # discs 7 px across
    ],
    ids=["scale over the pixel limit", "scale to 1x1", "object size to 1x1"],
)
def test_a_scale_over_the_pixel_limit_or_under_the_smallest_tile_is_refused(tmp_path, capfd, option, value, message):
    images, masks = _masks_set(tmp_path, {"a": disc_labels((40, 40), [(20, 20)], 3)})
    err = _refused(tmp_path, capfd, images, "--masks", masks, option, value)
    assert "a.png: " + message in err, err


def test_an_image_small_as_read_or_shrunk_to_the_smallest_tile_is_imported(tmp_path):
    small = _masks_set(tmp_path / "small", {"a": disc_labels((12, 12), [(6, 6)], 3)})
    assert _import(small[0], "--masks", small[1], "--out", tmp_path / "o.npz", "--scale", "1") == 0  # padded
    assert _import(small[0], "--masks", small[1], "--out", tmp_path / "o.npz", "--scale", "0.5") == 2  # 6x6
    big = _masks_set(tmp_path / "big", {"b": disc_labels((40, 40), [(20, 20)], 3)})
    assert _import(big[0], "--masks", big[1], "--out", tmp_path / "o.npz", "--scale", "0.4") == 0  # 16x16
    assert _import(big[0], "--masks", big[1], "--out", tmp_path / "o.npz", "--scale", "0.37") == 2  # 15x15


def test_counts_csv_of_a_test_set(tmp_path):
    labels = disc_labels((64, 40), [(5, 5), (40, 30), (50, 10)], 3)
    images, masks = _masks_set(tmp_path, {"t": labels})
    out_path, csv_path = tmp_path / "test.npz", tmp_path / "test_counts.csv"
    assert _import(images, "--masks", masks, "--out", out_path, "--counts-csv", csv_path) == 0
    X = load_test(out_path)
    counts = load_counts_csv(csv_path, len(X))
    assert counts.tolist() == _npz(out_path)["counts"].tolist() == [1, 0, 2, 2]


def test_images_alone_make_a_test_file(tmp_path, capsys):
    for stem, shape in (("a", (40, 40)), ("b", (64, 20))):
        _write(tmp_path / "img" / f"{stem}.png", np.full(shape, 30, np.uint8))
    out_path = tmp_path / "test.npz"
    assert _import(tmp_path / "img", "--out", out_path, "--scale", "0.5") == 0
    out = _npz(out_path)
    assert sorted(out) == ["X", "groups", "names", "scale"]  # nothing to count: no counts, points or y
    assert out["groups"].tolist() == [0, 1] and out["scale"].tolist() == [0.5, 0.5]
    np.testing.assert_array_equal(load_test(out_path), out["X"])  # what search.export --test reads
    assert "2 images (no annotation) -> 2 tiles of 32x32\n" in capsys.readouterr().out
    assert _import(tmp_path / "img", "--out", out_path) == 0
    assert _npz(out_path)["scale"].tolist() == [1, 1]  # no cell size to rescale by: kept


@pytest.mark.parametrize("option", [["--counts-csv", "c.csv"], ["--allow-empty"]])
def test_images_alone_refuse_the_options_of_annotations(tmp_path, capsys, option):
    _write(tmp_path / "img" / "a.png", np.full((40, 40), 30, np.uint8))
    with pytest.raises(SystemExit) as exc:
        _import(tmp_path / "img", "--out", tmp_path / "o.npz", *option)
    assert exc.value.code == 2 and f"{option[0]} needs an annotation" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


# --- pixel formats ------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 4])
def test_colour_images_take_the_brightest_channel(tmp_path, channels):
    labels = rect_labels((32, 32), [(10, 15, 10, 15)])
    images, masks = _masks_set(tmp_path, {"a": labels})
    colour = np.zeros((32, 32, channels), np.uint8)
    colour[..., 0] = np.where(labels > 0, 200, 10)  # blue, as a DAPI channel: cv2 writes BGR
    colour[..., 1] = 5
    if channels == 4:
        colour[..., 3] = 255  # opaque alpha: not signal
    _write(images / "a.png", colour)
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz") == 0
    np.testing.assert_array_equal(_npz(tmp_path / "o.npz")["X"][0], np.where(labels > 0, 200, 10))


def test_palette_png_mask_ids_are_its_indices(tmp_path):
    labels = disc_labels((40, 40), [(8, 8), (8, 30), (30, 20)], 3)
    images, masks = _masks_set(tmp_path, {"a": labels})
    (masks / "a.tif").unlink()
    mask = Image.frombytes("P", (40, 40), labels.astype(np.uint8).tobytes())
    mask.putpalette([0, 0, 0] + [200, 30, 90] * 255)  # every cell the same colour: only the indices tell them apart
    mask.save(masks / "a.png")
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz", "--scale", "1", tile=48) == 0
    assert _npz(tmp_path / "o.npz")["counts"].tolist() == [3]


def test_float_mask_of_whole_ids_is_read_and_fractions_refused(tmp_path, capsys):
    labels = disc_labels((40, 40), [(8, 8), (8, 30), (30, 20)], 3)
    images, masks = _masks_set(tmp_path, {"a": labels})
    _write(masks / "a.tif", labels.astype(np.float32))
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz", "--scale", "1", tile=48) == 0
    assert _npz(tmp_path / "o.npz")["counts"].tolist() == [3]
    _write(masks / "a.tif", labels.astype(np.float32) / 2)
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz", "--scale", "1", tile=48) == 2
    assert "a.tif: mask must hold integer instance ids" in capsys.readouterr().err


def test_16bit_images_stretched_past_hot_pixels(tmp_path):
    labels = rect_labels((40, 40), [(10, 19, 10, 19)])
    images, masks = _masks_set(tmp_path, {"a": labels})
    image = np.where(labels > 0, 5000, 1000).astype(np.uint16)
    image[0, 0] = 65535  # one hot pixel must not squeeze the cells into a few grey levels
    _write(images / "a.png", image)
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz", tile=48) == 0
    X = _npz(tmp_path / "o.npz")["X"][0, :40, :40]
    assert X.dtype == np.uint8
    assert (X[labels > 0] == 255).all() and X[0, 0] == 255
    assert (X[(labels == 0) & (X < 255)] == 0).all()


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_sparse_deep_images_keep_their_cells_visible(tmp_path, dtype):
    # One 2x2 cell in 64x64 (0.1% of the pixels): the 0.1th and 99.9th percentiles are both background.
    labels = rect_labels((64, 64), [(30, 31, 30, 31)])
    images, masks = _masks_set(tmp_path, {"a": labels})
    _write(images / "a.tif", np.where(labels > 0, 3000, 100).astype(dtype))
    (images / "a.png").unlink()
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz", "--scale", "1", tile=64) == 0
    out = _npz(tmp_path / "o.npz")
    assert out["counts"].tolist() == [1]
    np.testing.assert_array_equal(out["X"][0], np.where(labels > 0, 255, 0))


# --- rescaling ------------------------------------------------------------------


def test_rescale_by_object_size(tmp_path):
    # After halving, the discs are centred near 12, 44 and 76: one per window, clear of the overlaps.
    centres = [(24 + 64 * i, 24 + 64 * j) for i in range(3) for j in range(3)]
    images, masks = _masks_set(
        tmp_path,
        {
            "big": disc_labels((256, 256), centres, 11),  # 22 px across: shrunk by about 1/2
            "kept": disc_labels((64, 64), [(20, 20)], 6),  # 12-13 px, within 14: kept
            "small": disc_labels((64, 64), [(20, 20)], 2),  # 5 px: never enlarged
        },
    )
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz") == 0
    out = _npz(tmp_path / "o.npz")
    scale = out["scale"]
    assert abs(scale[0] - 11 / 22) < 0.02 and scale[1] == scale[2] == 1
    big = out["groups"] == 0
    assert len(out["X"][big]) == 5 * 5  # 256 px * 0.502 = 129 px: windows at 0, 32, 64, 96, 97
    counts = out["counts"][big].reshape(5, 5)
    assert (counts[:3, :3] == 1).all() and counts.sum() == 9  # every disc counted once
    y = out["y"][big]
    assert ((y > 0) & (y < 1)).any()  # edges partly covered after area averaging
    local = out["points"][: counts.sum(), 1:]
    assert ((local > 11) & (local < 13)).all()  # centres moved with the pixels
    assert out["counts"][~big].tolist() == [1, 0, 0, 0] * 2


def test_fixed_scale_for_dots(tmp_path):
    _write(tmp_path / "i" / "001cell.png", np.full((64, 64), 30, np.uint8))
    _write(tmp_path / "i" / "001dots.png", _dots_image((64, 64), [(10, 10), (60, 40)]))
    assert _import(tmp_path / "i", "--dots", tmp_path / "i", "--out", tmp_path / "o.npz", "--scale", "0.5") == 0
    out = _npz(tmp_path / "o.npz")
    assert out["X"].shape == (1, T, T) and out["scale"].tolist() == [0.5]
    np.testing.assert_allclose(out["points"], [[0, 4.75, 4.75], [0, 29.75, 19.75]])


def test_object_size_needs_masks(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--dots", str(tmp_path), "--out", "o.npz", "--object-size", "20"])
    assert exc.value.code == 2 and "--object-size needs --masks" in capsys.readouterr().err


# --- bad folders: one line, exit code 2, nothing written ------------------------------------


def _png_header_only(width, height):
    """A PNG of a few bytes whose header claims `width` x `height` 8-bit grey pixels (its data is short)."""

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _good_masks(root):
    return _masks_set(root, {"a": rect_labels((40, 40), [(3, 6, 3, 6)]), "b": rect_labels((40, 40), [(9, 9, 9, 9)])})


def _bad_case(root, case):
    """Build one bad input under root; return the command line and the file the message must name."""
    images, masks = _good_masks(root)
    out = root / "o.npz"
    args = [images, "--masks", masks, "--out", out]
    if case == "image without mask":
        (masks / "b.tif").unlink()
        return args, "b.png"
    if case == "mask without image":
        _write(masks / "c.tif", rect_labels((40, 40), [(1, 1, 1, 1)]))
        return args, "c.tif"
    if case == "size mismatch":
        _write(masks / "b.tif", rect_labels((40, 30), [(1, 1, 1, 1)]))
        return args, "b.tif"
    if case == "mask without instance":
        _write(masks / "b.tif", np.zeros((40, 40), np.uint16))
        return args, "b.tif"
    if case == "colour mask":
        _write(masks / "b.tif", np.zeros((40, 40, 3), np.uint8))
        return args, "b.tif"
    if case == "unreadable image":
        (images / "a.png").write_bytes(b"not an image at all")
        return args, "a.png"
    if case == "image over OpenCV's pixel limit":
        (images / "a.png").write_bytes(_png_header_only(40000, 40000))
        return args, "a.png"
    if case == "flat 16-bit image with cells":
        _write(images / "b.png", np.full((40, 40), 1000, np.uint16))  # black in 8 bits: nothing to see
        return args, "b.png"
    if case == "empty file":
        (masks / "a.tif").write_bytes(b"")
        return args, "a.tif"
    if case == "empty folder":
        for path in images.iterdir():
            path.unlink()
        (images / "notes.txt").write_text("no images here")
        return args, "images"
    if case == "missing folder":
        return [root / "nowhere", "--masks", masks, "--out", out], "nowhere"
    if case == "output is a folder":
        (root / "o.npz").mkdir()
        return args, "o.npz"
    if case == "output folder missing":
        return [images, "--masks", masks, "--out", root / "no" / "o.npz"], "no"
    dots = root / "dots"
    if case == "dots image without dot":
        _write(dots / "a.png", np.zeros((40, 40, 3), np.uint8))
        _write(dots / "b.png", _dots_image((40, 40), [(1, 1)]))
        return [images, "--dots", dots, "--out", out], "a.png"
    table = root / "dots.csv"
    csv_args = [images, "--dots-csv", table, "--out", out]
    table.write_text({"empty CSV": "", "CSV without rows": "image,row,col\n"}.get(case, "image,row,col\na,1,1\n"))
    if case in ("empty CSV", "CSV without rows"):
        return csv_args, "dots.csv"
    if case == "image without CSV row":
        return csv_args, "b.png"
    if case == "CSV names an unknown image":
        table.write_text("image,row,col\na,1,1\nb,2,2\nzz.png,1,1\n")
        return csv_args, "dots.csv"
    assert case == "CSV dot outside its image"
    table.write_text("image,row,col\na,1,1\nb,2,40\n")
    return csv_args, "dots.csv"


BAD_CASES = [
    "image without mask",
    "mask without image",
    "size mismatch",
    "mask without instance",
    "colour mask",
    "unreadable image",
    "image over OpenCV's pixel limit",
    "flat 16-bit image with cells",
    "empty file",
    "empty folder",
    "missing folder",
    "output is a folder",
    "output folder missing",
    "dots image without dot",
    "empty CSV",
    "CSV without rows",
    "image without CSV row",
    "CSV names an unknown image",
    "CSV dot outside its image",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capfd, case):
    args, names = _bad_case(tmp_path, case)
    before = sorted(tmp_path.rglob("*"))
    assert _import(*args, "--counts-csv", tmp_path / "counts.csv") == 2
    captured = capfd.readouterr()  # file descriptors: catches C-level decoder warnings too
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and names in lines[0], captured.err
    assert sorted(tmp_path.rglob("*")) == before  # no output, no temporary file


@pytest.mark.parametrize(
    "out, counts_csv, clash",
    [
        ("o.npz", "dots.csv", "--dots-csv"),  # the annotations overwritten by their counts
        ("dots.csv", None, "--dots-csv"),
        ("o.npz", "sub/../o.npz", "--out"),  # a CSV named .npz in place of the tiles
        ("images/a.png", None, "a.png in IMAGES_DIR"),
    ],
)
def test_output_that_is_an_input_or_the_other_output_is_refused(tmp_path, capsys, out, counts_csv, clash):
    images, _ = _good_masks(tmp_path)
    (tmp_path / "sub").mkdir()
    table = tmp_path / "dots.csv"
    table.write_text("image,row,col\na,1,1\nb,2,2\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    csv_args = [] if counts_csv is None else ["--counts-csv", tmp_path / counts_csv]
    assert _import(images, "--dots-csv", table, "--out", tmp_path / out, *csv_args) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"is the same file as {clash}" in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_allow_empty_imports_images_without_cells(tmp_path):
    images, masks = _good_masks(tmp_path)
    _write(masks / "b.tif", np.zeros((40, 40), np.uint16))
    assert _import(images, "--masks", masks, "--out", tmp_path / "o.npz", "--allow-empty") == 0
    out = _npz(tmp_path / "o.npz")
    assert out["counts"][out["groups"] == 1].sum() == 0 and out["scale"].tolist() == [1, 1]


def test_command_line_end_to_end(tmp_path):
    images, masks = _good_masks(tmp_path)
    command = [sys.executable, "-m", "data.importer", str(images), "--masks", str(masks), "--out"]
    ok = subprocess.run([*command, str(tmp_path / "o.npz")], capture_output=True, text=True, cwd=REPO)
    assert ok.returncode == 0 and "2 images (masks) -> 2 tiles of 128x128, 2 cells" in ok.stdout, ok.stderr
    bad = subprocess.run([*command, str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "output is a folder" in bad.stderr
