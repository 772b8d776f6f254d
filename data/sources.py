"""Read annotated image folders as whole-image sources and tile them into the harness's arrays.

A source is one whole image in 8-bit grey with its cells' centroids (masks,
dots images or a dots CSV) or none (a test set to predict). Every image is
rescaled, cut into square windows, and each window's cells counted by centroid
(see :mod:`data.tiling`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .annotations import dots_from_image, labels_from_image, read_dots_csv, split_binary_mask
from .errors import DataError
from .folders import list_images, pair_folders
from .images import checked_shape, read_gray, read_image
from .load import SIZE_MULTIPLE
from .tiling import (
    OBJECT_SIZE,
    choose_scale,
    count_in_windows,
    cut_tiles,
    float32_points,
    instance_centroids,
    map_points,
    resize,
    soft_mask,
)

__all__ = [
    "Source",
    "mask_sources",
    "dots_sources",
    "csv_sources",
    "image_sources",
    "check_visible",
    "tile_source",
    "import_tiles",
]


@dataclass
class Source:
    """One whole image ready to tile: 8-bit grey pixels, cell centroids when annotated, and labels when known.

    ``centres`` says whether the centroids are the cells' own: a binary mask's blobs merge
    touching cells, so their centroids count cells but are no centres to train on.
    """

    path: Path
    image: np.ndarray
    centroids: np.ndarray | None
    labels: np.ndarray | None = None
    areas: np.ndarray | None = None
    centres: bool = True


def _check_size(path, annotation_shape, image_path, image):
    """Refuse an annotation whose height and width differ from its image's."""
    if annotation_shape[:2] != image.shape:
        (h, w), (ih, iw) = annotation_shape[:2], image.shape
        raise DataError(path, f"annotation is {h}x{w} pixels but its image {image_path.name} is {ih}x{iw}")


def _check_not_empty(path, n, allow_empty, what):
    """Refuse an annotation with no cell (`what` says how it looks) unless empty ones are allowed."""
    if n == 0 and not allow_empty:
        raise DataError(path, f"{what}; pass --allow-empty to import such images as holding no cell")


def mask_sources(images_dir, masks_dir, allow_empty=False):
    """Images and their instance masks, paired by file stem (see :func:`data.folders.pair_folders`)."""
    for image_path, mask_path in pair_folders(images_dir, masks_dir, "mask"):
        image = read_gray(image_path)
        labels, blobs = split_binary_mask(labels_from_image(read_image(mask_path, palette_indices=True), mask_path))
        if blobs:
            print(
                f"{mask_path}: binary mask (one value in {blobs} separate blobs): each blob taken as one cell; "
                "no instances, so no cell centres to train on"
            )
        _check_size(mask_path, labels.shape, image_path, image)
        centroids, areas = instance_centroids(labels)
        _check_not_empty(mask_path, len(areas), allow_empty, "mask has no instance (all 0)")
        yield Source(image_path, image, centroids, labels, areas, centres=not blobs)


def dots_sources(images_dir, dots_dir, allow_empty=False):
    """Images and the dots of their dots images."""
    for image_path, dots_path in pair_folders(images_dir, dots_dir, "dots"):
        image = read_gray(image_path)
        marks = read_image(dots_path)
        _check_size(dots_path, marks.shape, image_path, image)
        dots = dots_from_image(marks, dots_path)
        _check_not_empty(dots_path, len(dots), allow_empty, "dots image has no dot (all black)")
        yield Source(image_path, image, dots)


def _check_inside(csv_path, dots, image_path, shape):
    """Refuse a dot outside its image: pixel centres at whole numbers, an H-row image spans [-0.5, H - 0.5).

    Both edges alike: a dot in the outer half of an edge pixel is in that pixel
    (the tiling clips it into the image, see :func:`data.tiling.map_points`), one
    past it is in no pixel.
    """
    outside = ((dots < -0.5) | (dots >= np.subtract(shape, 0.5))).any(axis=1)
    if outside.any():
        (row, col), (h, w) = dots[outside][0], shape
        raise DataError(
            csv_path,
            f"dot ({row:g}, {col:g}) lies outside {image_path.name}, which is {h}x{w} "
            f"(pixel centres at whole numbers: row in [-0.5, {h - 0.5:g}), col in [-0.5, {w - 0.5:g}))",
        )


def csv_sources(images_dir, csv_path, allow_empty=False):
    """Images and their dots listed in a CSV of ``image,row,col``."""
    images = list_images(images_dir)
    table = read_dots_csv(csv_path, images)
    for path in images.values():
        _check_not_empty(path, len(table.get(path.stem, ())), allow_empty, f"image has no dot in {csv_path}")
    for stem, path in images.items():
        image = read_gray(path)
        dots = table.get(stem, np.zeros((0, 2)))
        _check_inside(csv_path, dots, path, image.shape)
        yield Source(path, image, dots)


def image_sources(images_dir):
    """The images of a folder, without annotation (a test set to predict)."""
    for path in list_images(images_dir).values():
        yield Source(path, read_gray(path), None)


def check_visible(source):
    """Refuse an image that is all black while its annotation has cells.

    Its tiles would teach counts of cells nothing shows: a flat 16-bit or float
    image (one value) becomes black in 8 bits, and so does a blank export.
    """
    n = 0 if source.centroids is None else len(source.centroids)
    if n and not source.image.any():
        raise DataError(source.path, f"image is all black (in 8 bits) but its annotation has {n} cells")


def _rescaled_shape(source, scale):
    """The shape `source` is rescaled to, refused over the pixel limit or shrunk under the smallest tile.

    The limit is :data:`data.images.MAX_PIXELS`, as for prediction. An image
    shrunk to under :data:`data.load.SIZE_MULTIPLE` px on both sides (inside the
    smallest tile) holds hardly a cell of the size the nets learn: a mistaken
    factor. An image that small as read is kept (padded, as any image smaller
    than a tile), and so is a narrow strip.
    """
    shape = checked_shape(source.path, source.image.shape, scale)
    if all(new < min(old, SIZE_MULTIPLE) for new, old in zip(shape, source.image.shape)):
        raise DataError(
            source.path,
            f"image is {shape[0]}x{shape[1]} pixels rescaled by {scale:g}, under the smallest tile "
            f"({SIZE_MULTIPLE}x{SIZE_MULTIPLE} px): too small a --scale or --object-size",
        )
    return shape


def tile_source(source, scale, tile):
    """Rescale one whole image, cut it into windows and count each window's cells.

    Parameters
    ----------
    source : Source
    scale : float
        Rescale factor of the image.
    tile : int
        Window side in pixels.

    Returns
    -------
    X : ndarray of uint8, shape (N, tile, tile)
    y : ndarray of float32, shape (N, tile, tile), or None without labels
    counts : ndarray of int64, shape (N,), or None without centroids
    points : ndarray of float64, shape (M, 3), or None without centroids
        ``(window, row, col)`` in window coordinates.
    """
    shape = _rescaled_shape(source, scale)
    X, origins = cut_tiles(resize(source.image, shape), tile)
    counts = points = None
    if source.centroids is not None:
        counts, points = count_in_windows(map_points(source.centroids, source.image.shape, shape), origins, tile)
    y = None if source.labels is None else cut_tiles(soft_mask(source.labels, shape), tile)[0]
    return X, y, counts, points


def import_tiles(sources, tile, scale=None, object_size=OBJECT_SIZE):
    """Tile every source image into the arrays of the harness's npz.

    Parameters
    ----------
    sources : iterable of Source
    tile : int
    scale : float, optional
        One factor for every image; by default each image with cell areas
        gets :func:`data.tiling.choose_scale`, the others 1.
    object_size : float, optional
        Target median cell diameter for that choice.

    Returns
    -------
    arrays : dict of str to ndarray
        ``X``, ``y`` (when every source has labels), ``counts`` (when every source has
        centroids) and ``points`` (when they are all cell centres, see :class:`Source`),
        ``groups``, ``names`` and ``scale``.
    """
    parts, names, scales, centres = [], [], [], True
    for source in sources:
        centres &= source.centres
        check_visible(source)
        factor = scale or (choose_scale(source.areas, object_size) if source.areas is not None else 1.0)
        parts.append(tile_source(source, factor, tile))
        names.append(source.path.name)
        scales.append(factor)
    X, y, counts, points = zip(*parts)
    arrays = {
        "X": np.concatenate(X),
        "groups": np.repeat(np.arange(len(X)), [len(x) for x in X]).astype(np.int32),
        "names": np.array(names),
        "scale": np.array(scales, np.float32),
    }
    if counts[0] is not None:  # images without annotation have no cells to count
        first_tile = np.cumsum([0] + [len(x) for x in X[:-1]])
        points = [p + [first, 0, 0] for p, first in zip(points, first_tile)]
        arrays["counts"] = np.concatenate(counts).astype(np.int32)
        if centres:  # a study then searches targets at them
            arrays["points"] = float32_points(np.concatenate(points), tile)
    if y[0] is not None:  # masks give every image labels, dots none
        arrays["y"] = np.concatenate(y)
    return arrays
