"""Tests of `python -m search.predict`: whole images counted with a study's net, overlays, truth, refusals."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import optuna
import pandas as pd
import pytest
from helpers import STAGE, as_prob, built_study_folder, disc_set, load, run_study

import data
from data.images import MAX_PIXELS, read_scaled
from model import plots
from model.checkpoint import CONFIG
from model.count import count_setting
from model.infer import predict_prob
from model.stitch import stitch_predict
from search import export, members, predict
from search.errors import UsageError

T = 32  # the tiny study's tile side


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
    return built_study_folder(tmp_path_factory, n_trials=1)


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
    monkeypatch.setattr(predict, "predict_prob", lambda net, windows, loss: as_prob(windows))


def load_study(storage="sqlite:///studies/cells.db"):
    return optuna.load_study(study_name="cells", storage=storage)


def best_setting():
    return load_study().best_trial.user_attrs["counting"]


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
        prob = stitch_predict(image, lambda w: predict_prob(net, w, loss="bce"), config["tile_size"][0])
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


def test_scale_from_the_training_import_or_the_option(tmp_path):
    def scale_of(arrays=None, override=None):
        train = tmp_path / "train.npz"
        if arrays is not None:
            np.savez(train, X=np.zeros((2, 32, 32), np.uint8), **arrays)
        sha = data.fingerprint(train) if train.exists() else None
        attrs = {"train_path": "train.npz", "train_fingerprint": sha}
        return predict.training_scale(attrs, tmp_path, override)[0]

    with pytest.raises(UsageError, match="give --scale"):
        scale_of()  # the training file is not here
    assert scale_of({}) == 1.0  # the competition's files record none
    assert scale_of({"scale": np.array([0.5, 0.5], np.float32)}) == 0.5
    assert scale_of({"scale": np.array([0.4, 0.5, 1.0], np.float32)}) == 0.5  # the median
    assert scale_of(override=2.0) == 2.0
    assert predict.training_scale({}, tmp_path, None)[0] == 1.0


def test_scale_option_rescales_before_prediction(images_dir, in_tmp, pixel_net, capsys):
    assert predict.main([str(images_dir), "--scale", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "scale 0.5 (--scale)" in out and "wide.png (50x35 px)" in out


def test_truth_with_rows_for_other_images_scores_the_images_present(images_dir, in_tmp, pixel_net, capsys):
    offset = best_setting().get("offset", 0)
    truth = in_tmp / "truth.csv"
    rows = [f"{n}.png,{len(c)}" for n, (_, c) in IMAGES.items()] + ["elsewhere.png,7", "other,3"]
    truth.write_text("image,count\n" + "\n".join(rows) + "\n")
    assert predict.main([str(images_dir), "--truth", str(truth)]) == 0
    out = capsys.readouterr().out
    assert f"--truth {truth}: 2 rows name no image in {images_dir}; not used" in out
    assert f"MAE {abs(offset):.3f}, bias {offset:+.3f} over 2 images" in out
    # One image of the folder against the same shared table.
    one = images_dir / "wide.png"
    assert predict.main([str(one), "--truth", str(truth), "--out", "one.csv"]) == 0
    out = capsys.readouterr().out
    assert f"3 rows name no image in {one}; not used" in out and "over 1 images" in out


@pytest.fixture(scope="module")
def density_study(tmp_path_factory):
    """A tiny finished dots study whose trial 1 trains a density map, its training file ``train.npz`` relative."""
    return built_study_folder(tmp_path_factory, n_trials=2, density=True)


def test_a_density_model_counts_an_image_as_the_export_counts_the_same_tile(density_study, in_tmp, capsys):
    storage = f"sqlite:///{density_study}/studies/cells.db"
    config = json.loads((density_study / load_study(storage).trials[1].user_attrs["checkpoint"] / CONFIG).read_text())
    assert config["train"]["loss"] == "mse"
    tiles = disc_set(6, seed=2)["X"]
    np.savez(in_tmp / "test.npz", X=tiles)
    (in_tmp / "images").mkdir()
    for i, tile in enumerate(tiles):
        cv2.imwrite(str(in_tmp / "images" / f"{i}.png"), tile)
    assert export.main(["--storage", storage, "--trial", "1", "--test", "test.npz"]) == 0
    assert predict.main(["images", "--storage", storage, "--trial", "1", "--scale", "1"]) == 0
    # A tile as a whole image is one window: its map, and so its count, is the export's.
    exported = pd.read_csv(in_tmp / "submission.csv")["count"].tolist()
    counted = pd.read_csv(in_tmp / "counts.csv")
    assert counted["image"].tolist() == [f"{i}.png" for i in range(6)]
    assert counted["count"].tolist() == exported and max(exported) <= 20  # not sigmoids summed: ~500 a tile


def test_predict_elsewhere_reads_the_training_file_the_study_recorded(density_study, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # An unrelated train.npz in the working folder, which recorded a rescaling by 0.5.
    np.savez(elsewhere / "train.npz", X=np.zeros((2, 32, 32), np.uint8), scale=np.array([0.5, 0.5], np.float32))
    cv2.imwrite(str(elsewhere / "a.png"), disc_image((64, 64), [(20, 20)]))
    monkeypatch.chdir(elsewhere)
    storage = f"sqlite:///{density_study}/studies/cells.db"
    assert predict.main(["a.png", "--storage", storage]) == 0
    out = capsys.readouterr().out
    assert f"scale 1 ({density_study / 'train.npz'} records no rescaling)" in out and "(64x64 px)" in out
    # The project moved with its studies: found there; changed or gone, refused in one line.
    moved = tmp_path / "moved"
    shutil.copytree(density_study / "studies", moved / "studies")
    shutil.copy(density_study / "train.npz", moved / "train.npz")
    storage = f"sqlite:///{moved}/studies/cells.db"
    assert predict.main(["a.png", "--storage", storage]) == 0
    assert f"scale 1 ({moved / 'train.npz'} records no rescaling)" in capsys.readouterr().out
    (elsewhere / "counts.csv").unlink()
    shutil.copy(elsewhere / "train.npz", moved / "train.npz")
    refused(
        ["a.png", "--storage", storage], "train.npz changed since the study started; give --scale", capsys, elsewhere
    )
    (moved / "train.npz").unlink()
    refused(["a.png", "--storage", storage], "train.npz is not found; give --scale", capsys, elsewhere)
    assert predict.main(["a.png", "--storage", storage, "--scale", "1"]) == 0


def test_outputs_over_the_study_database_or_in_its_folder_are_refused(images_dir, in_tmp, capsys):
    folder = next(p for p in (in_tmp / "studies").iterdir() if p.is_dir()).relative_to(in_tmp)
    before = {p: p.read_bytes() for p in (in_tmp / "studies").rglob("*") if p.is_file()}
    refused(
        [str(images_dir), "--out", "studies/cells.db"], "--out studies/cells.db: is the study's storage", capsys, in_tmp
    )
    refused([str(images_dir), "--overlays", str(folder / "o")], "is in the study's folder", capsys, in_tmp)
    assert {p: p.read_bytes() for p in (in_tmp / "studies").rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_whole_images_get_the_finalists_weighted_count_and_an_interval(tiny_files, tiny_profile, in_tmp, capsys):
    train, _, _ = tiny_files
    assert run_study(train, "--n-trials", "2", *STAGE) == 0
    folder = in_tmp / "images"
    folder.mkdir()
    for name, (shape, centres) in IMAGES.items():
        cv2.imwrite(str(folder / f"{name}.png"), disc_image(shape, centres))
    assert predict.main([str(folder), "--out", "counts.csv"]) == 0
    table = pd.read_csv(in_tmp / "counts.csv")
    assert list(table.columns) == ["image", "count", "low", "high"] and (table["low"] <= table["high"]).all()
    # The same by hand: every weighted member's whole-image count, blended for an image of its area in tiles.
    choice = members.choose(load(), None, None)
    nets = [members.open_member(m, Path("."), "cpu")[0] for m in choice.members]
    for name, count, low, high in table.itertuples(index=False):
        image = read_scaled(folder / name)
        counts = [
            count_setting(
                stitch_predict(image, lambda w, net=net: predict_prob(net, w, loss="bce"), T),
                m.trial.user_attrs["counting"],
            )
            for net, m in zip(nets, choice.members)
        ]
        final, (lows, highs) = members.blend_counts(choice, np.array(counts), 0.9, image.size / T**2, whole=True)
        assert (count, low, high) == (final[0], lows[0], highs[0])
    assert predict.main([str(folder), "--interval", "0", "--out", "plain.csv"]) == 0
    assert list(pd.read_csv(in_tmp / "plain.csv").columns) == ["image", "count"]
    # With true counts, how many of the images their intervals hold.
    truth = in_tmp / "truth.csv"
    truth.write_text("image,count\n" + "".join(f"{n}.png,{len(c)}\n" for n, (_, c) in IMAGES.items()))
    held = ((table["low"] <= [2, 4]) & ([2, 4] <= table["high"])).mean()  # small.png, wide.png: in name order
    capsys.readouterr()
    assert predict.main([str(folder), "--truth", str(truth), "--out", "t.csv"]) == 0
    assert f"over 2 images; intervals cover {held:.1%}" in capsys.readouterr().out
