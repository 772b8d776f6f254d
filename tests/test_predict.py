"""Tests of whole-image prediction: stitching, counting whole images, `python -m search.predict`."""

import importlib.util
import json
import shutil
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import optuna
import pandas as pd
import pytest
from helpers import disc_tiles
from tiny_worker import TINY

from data.images import MAX_PIXELS, read_scaled
from model import plots
from model.count import count_setting, object_centroids
from model.infer import predict_prob
from model.stitch import stitch_predict, window_origins, window_weights
from search import members, predict, space, study
from search.errors import UsageError

T = 32  # window side of the stitching tests


def as_prob(windows):
    """A 'net' that predicts each pixel from itself alone: any stitching must give it back exactly."""
    return windows.astype(np.float32) / 255


def ramp(shape):
    """A linear ramp of the global coordinates (uint8: it wraps only past 255)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((rows + 2 * cols) % 256).astype(np.uint8)


# --- stitching ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(T, T), (100, 70), (64, 96), (20, 45), (7, 7)])
def test_stitched_ramp_is_the_ramp_with_no_seam(shape):
    image = ramp(shape)
    assert np.allclose(stitch_predict(image, as_prob, T, batch_size=3), image / 255, atol=1e-6)


def test_constant_stitches_to_the_constant_and_overlaps_blend():
    calls = []

    def window_index(windows):
        """Each window predicts its own number: a seam would show as a jump between two of them."""
        calls.extend(range(len(calls), len(calls) + len(windows)))
        return np.array(calls[-len(windows) :], np.float32)[:, None, None] * np.ones((1, T, T), np.float32)

    image = np.zeros((100, 100), np.uint8)
    assert np.allclose(stitch_predict(image, lambda w: np.full(w.shape, 0.25, np.float32), T), 0.25)
    blended = stitch_predict(image, window_index, T, batch_size=5)
    rows, cols = window_origins(image.shape, T)
    assert len(calls) == len(rows) * len(cols)
    # Values move smoothly from window to window: the largest step between neighbouring pixels is
    # a small part of the step between neighbouring windows' values (1 along a row, len(cols) down).
    assert np.abs(np.diff(blended, axis=1)).max() < 0.25
    assert np.abs(np.diff(blended, axis=0)).max() < 0.25 * len(cols)
    # A pixel in an overlap takes values from both windows.
    assert 0 < blended[10, T // 2 + 4] < 1


def test_window_weights_partition_of_unity_and_positive_edges():
    w = window_weights(T)
    assert w.min() > 0 and np.allclose(w[: T // 2] + w[T // 2 :], 1)
    rows, cols = window_origins((100, 40), T)
    assert rows.tolist() == [0, 16, 32, 48, 64, 68] and cols.tolist() == [0, 8]


def test_cell_on_a_window_edge_is_counted_once():
    image = np.zeros((64, 96), np.uint8)
    rows, cols = np.mgrid[:64, :96]
    image[(rows - 30) ** 2 + (cols - T) ** 2 <= 16] = 200  # centred on the first windows' right edge
    prob = stitch_predict(image, as_prob, T)
    for counter in ({"counter": "components", "threshold": 0.5}, {"counter": "watershed", "threshold": 0.5}):
        assert count_setting(prob, counter).tolist() == [1]
    # Counted per window instead, the cut cell would count in two windows.
    assert count_setting(np.stack([prob[:T, :T], prob[:T, T : 2 * T]]), {"counter": "components"}).sum() == 2


def test_4000_by_4000_stitching_memory_is_bounded():
    """The stitcher's own arrays for a 4000x4000 image: the image, its map, one batch (~100 MB)."""
    image = np.zeros((4000, 4000), np.uint8)
    tracemalloc.start()
    try:
        prob = stitch_predict(image, lambda w: np.zeros(w.shape, np.float32), 128)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert prob.shape == (4000, 4000)
    assert peak < 256 * 2**20, f"peak {peak / 2**20:.0f} MiB"


# --- where the counted objects are ----------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        {"counter": "components", "threshold": 0.5, "offset": 1},
        {"counter": "watershed", "threshold": 0.4, "min_distance": 2, "min_area": 5, "edge_fraction": 0.5},
        {"counter": "watershed", "threshold": 0.5, "min_distance": 3, "min_area": 0, "edge_fraction": 0, "offset": -1},
    ],
)
def test_centroids_are_what_the_count_counts(setting):
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:90, :70]
    for _ in range(5):
        prob = np.zeros((90, 70), np.float32)
        for r, c in rng.integers(-3, 93, size=(rng.integers(0, 25), 2)):  # some cut by the border, some touching
            prob = np.maximum(prob, np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 12.0))
        centroids = object_centroids(prob, setting)
        assert count_setting(prob, setting).tolist() == [max(len(centroids) + setting.get("offset", 0), 0)]
        assert ((centroids >= 0) & (centroids < prob.shape)).all()


def test_centroid_of_a_disc_and_a_counter_without_positions():
    prob = np.zeros((40, 40), np.float32)
    rows, cols = np.mgrid[:40, :40]
    prob[(rows - 12) ** 2 + (cols - 25) ** 2 <= 9] = 1
    for counter in ("components", "watershed"):
        assert np.allclose(object_centroids(prob, {"counter": counter}), [[12, 25]])
    with pytest.raises(ValueError, match="unknown counter with object positions 'density'"):
        object_centroids(prob, {"counter": "density", "offset": 0})


# --- python -m search.predict ------------------------------------------------------


def disc_image(shape, centres, radius=4):
    """A dark image with a bright disc at each centre ``(row, col)``."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, 20, np.uint8)
    for r, c in centres:
        image[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = 200
    return image


# Sizes around the tiny study's 32-px tiles: smaller than a window, and no multiple of one.
IMAGES = {
    "small": ((20, 45), [(10, 12), (9, 33)]),
    "wide": ((70, 100), [(15, 15), (40, T), (60, 90), (35, 64)]),  # (40, 32) on a window edge
}


@pytest.fixture(scope="module")
def built_study(tmp_path_factory):
    """One tiny finished study for the whole module (training is what costs): its folder."""
    root = tmp_path_factory.mktemp("built")
    X, y, counts = disc_tiles(30, seed=1)
    np.savez_compressed(root / "train.npz", X=X, y=y, counts=counts)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setitem(space.PROFILES, "tiny", TINY)
        assert study.main(["--train", str(root / "train.npz"), "--profile", "tiny", "--n-trials", "1"]) == 0
    return root


@pytest.fixture
def images_dir(built_study, in_tmp):
    """The built study in this test's folder, and a folder of images of odd sizes: its path."""
    shutil.copytree(built_study / "studies", in_tmp / "studies")
    folder = in_tmp / "images"
    folder.mkdir()
    for name, (shape, centres) in IMAGES.items():
        cv2.imwrite(str(folder / f"{name}.png"), disc_image(shape, centres))
    return folder


@pytest.fixture
def pixel_net(monkeypatch):
    """The study's nets replaced by one that predicts each pixel from itself: counts are the discs'."""
    monkeypatch.setattr(predict, "predict_prob", lambda net, windows: as_prob(windows))


def best_setting():
    return optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db").best_trial.user_attrs["counting"]


def test_whole_images_counted_with_the_study_net(images_dir, in_tmp, capsys):
    colour = np.zeros((50, 60, 3), np.uint16)
    colour[..., 0] = disc_image((50, 60), [(25, 30)]).astype(np.uint16) * 200  # 16-bit, blue channel
    cv2.imwrite(str(images_dir / "deep.tif"), colour)
    assert predict.main([str(images_dir), "--out", "counts.csv"]) == 0
    table = pd.read_csv(in_tmp / "counts.csv")
    assert table["image"].tolist() == ["deep.tif", "small.png", "wide.png"] and table["count"].dtype.kind == "i"
    # The same count by hand: the trial's net over the whole image, its counting on the whole map.
    member = members.choose(optuna.load_study(study_name="cells", storage="sqlite:///studies/cells.db"), None, None)
    net, config, _ = members.open_member(member.members[0], Path("."), "cpu")
    for name, count in zip(table["image"], table["count"]):
        image = read_scaled(images_dir / name)
        prob = stitch_predict(image, lambda w: predict_prob(net, w), config["tile_size"][0])
        assert prob.shape == image.shape and count == count_setting(prob, best_setting())[0]
    out = capsys.readouterr().out
    assert "[3/3] wide.png (100x70 px)" in out and "scale 1 (" in out


def test_overlays_mark_every_counted_cell(images_dir, in_tmp, pixel_net):
    assert predict.main([str(images_dir), "--overlays", "marked"]) == 0
    offset = best_setting().get("offset", 0)
    table = pd.read_csv(in_tmp / "counts.csv").set_index("image")
    for name, (shape, centres) in IMAGES.items():
        assert table.loc[f"{name}.png", "count"] == max(len(centres) + offset, 0)
        overlay = cv2.imread(str(in_tmp / "marked" / f"{name}.png"))
        h, w = shape
        assert overlay.shape[0] == plots.CAPTION_HEIGHT + h and overlay.shape[1] >= w
        picture = overlay[plots.CAPTION_HEIGHT :, :w]
        red = (picture == plots.MARK_COLOUR).all(axis=2)
        for r, c in centres:  # the circle's rightmost pixel, inside the image
            assert red[r, c + plots.MARK_RADIUS] or c + plots.MARK_RADIUS >= w
        # Everything but the marks is the image as read, in grey.
        assert (picture[~red] == disc_image(shape, centres)[~red][:, None]).all()
        assert red.sum() > 0


def test_truth_csv_and_masks_give_mae_bias_and_scatter(images_dir, in_tmp, pixel_net, capsys):
    offset = best_setting().get("offset", 0)
    truth = in_tmp / "truth.csv"
    truth.write_text("image,count\n" + "".join(f"{n}.png,{len(c)}\n" for n, (_, c) in IMAGES.items()))
    assert predict.main([str(images_dir), "--truth", str(truth), "--out", "out/c.csv"]) == 0
    out = capsys.readouterr().out
    assert f"MAE {abs(offset):.3f}, bias {offset:+.3f} over 2 images" in out
    assert cv2.imread(str(in_tmp / "out" / "c.png")) is not None  # the scatter plot beside --out
    masks = in_tmp / "masks"
    masks.mkdir()
    for name, (shape, centres) in IMAGES.items():
        labels = np.zeros(shape, np.uint16)
        for i, (r, c) in enumerate(centres, start=1):
            labels[r - 1 : r + 2, c - 1 : c + 2] = i
        cv2.imwrite(str(masks / f"{name}.png"), labels)
    dots = in_tmp / "dots"
    dots.mkdir()
    for name, (shape, centres) in IMAGES.items():
        marks = np.zeros(shape, np.uint8)
        marks[tuple(np.array(centres).T)] = 255
        cv2.imwrite(str(dots / f"{name}.png"), marks)
    for option, folder in (("--masks", masks), ("--dots", dots)):
        assert predict.main([str(images_dir), option, str(folder), "--out", "m.csv"]) == 0
        assert f"MAE {abs(offset):.3f}" in capsys.readouterr().out and (in_tmp / "m.png").exists()


def refused(args, message, capsys, in_tmp):
    """Run predict with ``args``: exit 2, one line naming ``message``, no CSV written."""
    assert predict.main(args) == 2, args
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, (args, err)
    assert not (in_tmp / "counts.csv").exists()


def test_bad_inputs_exit_2_in_one_line(images_dir, in_tmp, capsys):
    empty = in_tmp / "empty"
    empty.mkdir()
    refused([str(empty)], "no image files", capsys, in_tmp)
    refused([str(images_dir), "--out", str(images_dir / "small.png")], "is an input", capsys, in_tmp)
    refused([str(images_dir), "--overlays", str(images_dir)], "is an input folder", capsys, in_tmp)
    truth = in_tmp / "truth.csv"
    truth.write_text("image,count\nsmall.png,2\n")
    refused([str(images_dir), "--truth", str(truth)], "no count for image wide.png", capsys, in_tmp)
    (images_dir / "zero.png").write_bytes(b"")
    refused([str(images_dir)], "zero.png: file is empty", capsys, in_tmp)
    (images_dir / "zero.png").write_bytes(b"not a png at all")
    refused([str(images_dir)], "zero.png: cannot decode image", capsys, in_tmp)
    (images_dir / "zero.png").unlink()
    side = int(np.sqrt(MAX_PIXELS)) + 1  # black compresses to a few kB, however large
    cv2.imwrite(str(images_dir / "huge.png"), np.zeros((side, side), np.uint8))
    refused([str(images_dir)], f"huge.png: image is {side}x{side} pixels, over the limit", capsys, in_tmp)


def test_study_without_finished_trial_exits_2(in_tmp, capsys):
    (in_tmp / "studies").mkdir()
    optuna.create_study(study_name="cells", storage="sqlite:///studies/cells.db")
    folder = in_tmp / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), disc_image((40, 40), [(20, 20)]))
    refused([str(folder)], "no finished trial", capsys, in_tmp)


def test_speed_benchmark_prints_what_it_measured(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "predict_speed.py"
    spec = importlib.util.spec_from_file_location("predict_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--sizes", "40", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["device"] == "cpu" and result["tile"] == 128 and result["threads"] >= 1
    assert [r["side"] for r in result["rows"]] == [40] and result["rows"][0]["megapixels_per_s"] > 0


def test_scale_from_the_training_import_or_the_option(tmp_path):
    def scale_of(arrays=None, override=None):
        train = tmp_path / "train.npz"
        if arrays is not None:
            np.savez(train, X=np.zeros((2, 32, 32), np.uint8), **arrays)
        return predict.training_scale(SimpleNamespace(user_attrs={"train_path": str(train)}), override)[0]

    with pytest.raises(UsageError, match="give --scale"):
        scale_of()  # the training file is not here
    assert scale_of({}) == 1.0  # the competition's files record none
    assert scale_of({"scale": np.array([0.5, 0.5], np.float32)}) == 0.5
    assert scale_of({"scale": np.array([0.4, 0.5, 1.0], np.float32)}) == 0.5  # the median
    assert scale_of(override=2.0) == 2.0
    assert predict.training_scale(SimpleNamespace(user_attrs={}), None)[0] == 1.0


def test_scale_option_rescales_before_prediction(images_dir, in_tmp, pixel_net, capsys):
    assert predict.main([str(images_dir), "--scale", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "scale 0.5 (--scale)" in out and "wide.png (50x35 px)" in out
