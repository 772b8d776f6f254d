"""Read cell annotations: instance label masks and dots images as decoded, and CSVs keyed by image.

Masks hold one instance id per cell (0 = background); dots mark one cell per
dot, as dots images or as a CSV of ``image,row,col``; a CSV of ``image,count``
gives true counts. Coordinates are pixel indices, ``(row, col)``, with pixel
centres at integers. Every problem is a one-line :class:`DataError` naming the file.
"""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .errors import DataError, check_file
from .folders import pair_folders
from .images import one_channel, read_image
from .tiling import instance_centroids

__all__ = [
    "labels_from_image",
    "split_binary_mask",
    "dot_pixels",
    "dots_from_image",
    "annotation_counts",
    "read_dots_csv",
    "read_image_counts",
]


def labels_from_image(image, path):
    """Check a decoded mask is an instance label image (0 = background).

    Returns
    -------
    labels : ndarray of int, shape (H, W)

    Raises
    ------
    DataError
        If it has colour channels, holds values that are not whole numbers
        (floats are accepted when they all are: float TIFFs of ids), or
        negative ids.
    """
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise DataError(path, f"mask must be one channel of instance ids, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.integer):
        if not np.issubdtype(image.dtype, np.floating) or not np.isfinite(image).all() or (image % 1).any():
            raise DataError(path, f"mask must hold integer instance ids, got {image.dtype} values that are not whole")
        image = image.astype(np.int64)
    if image.min() < 0:
        raise DataError(path, "mask holds negative instance ids")
    return image


def split_binary_mask(labels):
    """Label each blob of a binary mask as its own instance.

    A mask whose one non-zero value (1, or 255) covers several separate blobs
    is a foreground/background mask, not instance labels: taken as is, all its
    cells would be one instance, counted once, and its huge area would shrink
    the image. Touching pixels (8-connected) are one blob. Any other mask is
    returned unchanged: an instance id in several pieces is one cell.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)

    Returns
    -------
    labels : ndarray of int, shape (H, W)
    blobs : int
        The number of blobs labelled, 0 when `labels` was returned unchanged.

    Examples
    --------
    >>> mask = np.zeros((3, 5), np.uint8)
    >>> mask[0, 0] = mask[2, 4] = 255
    >>> labels, blobs = split_binary_mask(mask)
    >>> blobs, int(labels[2, 4])
    (2, 2)
    """
    values = np.unique(labels)
    if len(values[values != 0]) != 1:
        return labels, 0
    n, components = cv2.connectedComponents((labels != 0).astype(np.uint8), connectivity=8)
    return (components, n - 1) if n > 2 else (labels, 0)


def dot_pixels(image, path):
    """Which pixels of a decoded dots image are dot pixels.

    In a one-channel integer image stored losslessly (a label image: dots
    1..K, or 10, 20, ...) every non-zero pixel is: half the brightest would
    drop the dots of the lower labels. In a colour image or a JPEG, those
    brighter than half the brightest pixel over the colour channels are (a
    red dot on black, a white one): faint compression noise is not a dot.

    Returns
    -------
    mask : ndarray of bool, shape (H, W)
    """
    signal = one_channel(image, path)
    labels = image.ndim == 2 or image.shape[2] == 1
    lossless = Path(path).suffix.lower() not in (".jpg", ".jpeg")
    if labels and lossless and np.issubdtype(signal.dtype, np.integer):
        return signal > 0
    return signal > signal.max() / 2 if signal.max() > 0 else np.zeros(signal.shape, bool)


def dots_from_image(image, path):
    """The cells marked in a dots image, one per blob of dot pixels (see :func:`dot_pixels`).

    Touching dot pixels (8-connected) are one dot, counted once at their
    centroid.

    Returns
    -------
    dots : ndarray of float64, shape (K, 2)
        ``(row, col)`` of every dot; K is 0 for an image with no dot.
    """
    _, _, _, centroids = cv2.connectedComponentsWithStats(dot_pixels(image, path).astype(np.uint8), connectivity=8)
    # Label 0 is the background; cv2 gives (x, y), that is (col, row).
    return centroids[1:, ::-1].astype(np.float64)


def annotation_counts(images_dir, annotations_dir, kind):
    """The number of cells in the annotation of every image of a folder.

    Parameters
    ----------
    images_dir, annotations_dir : str or os.PathLike
        Paired as by :func:`pair_folders`.
    kind : {"mask", "dots"}
        Instance label masks (one cell per id) or dots images (one per dot blob).

    Returns
    -------
    counts : dict of Path to int
        By image file, sorted by stem; the images of a dots folder that holds them
        both are the files that are not dots images.
    """
    counts = {}
    for image, annotation in pair_folders(images_dir, annotations_dir, kind):
        marks = read_image(annotation)
        found = (
            instance_centroids(labels_from_image(marks, annotation))[1]
            if kind == "mask"
            else dots_from_image(marks, annotation)
        )
        counts[image] = len(found)
    return counts


def _read_image_table(path, columns, images, what, others=False):
    """The rows of a CSV keyed by image: their image stems and numeric `columns`.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV: a header naming ``image`` and `columns` (other columns ignored);
        ``image`` is the image's file name or stem.
    columns : tuple of str
        The numeric columns.
    images : dict of str to Path
        The images, by stem.
    what : str
        What a row is, for messages ("dots", "counts").
    others : bool, optional
        Keep rows naming images not in `images` (their stem NaN), instead of refusing them.

    Returns
    -------
    stems : ndarray of object, shape (R,)
    values : ndarray of float64, shape (R, len(columns))
    """
    path = check_file(path)
    try:
        table = pd.read_csv(path, dtype={"image": str})
    except pd.errors.EmptyDataError:
        raise DataError(path, "CSV file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(path, f"cannot parse CSV ({type(err).__name__}: {err})") from err
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("image", *columns) if c not in table.columns]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(map(repr, missing))} (found: {', '.join(table.columns)})")
    if len(table) == 0:
        raise DataError(path, f"CSV has a header but no {what}")
    values = table[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        line = int(np.flatnonzero(bad)[0])
        listed = " and ".join(columns)
        raise DataError(path, f"data row {line + 1}: {listed} must be numbers, got {values[line].tolist()}")
    stems = {p.name: s for s, p in images.items()} | {s: s for s in images}
    names = table["image"].fillna("").str.strip()
    unknown = ~names.isin(list(stems))
    if unknown.any() and not others:
        line = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataError(path, f"data row {line + 1}: image {names.iloc[line]!r} is not in the images folder")
    return names.map(stems).to_numpy(), values


def read_image_counts(path, images):
    """True counts per image from a CSV of ``image,count``, one row per image; other images' rows left out.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV (see :func:`read_dots_csv` for ``image``); ``count`` a whole number >= 0. It may
        list more images than `images` (a table shared by several folders).
    images : dict of str to Path
        The images, by stem.

    Returns
    -------
    counts : dict of str to int
        By image stem, for every image of `images`.
    unused : int
        The rows naming no image of `images`.

    Raises
    ------
    DataError
        As :func:`read_dots_csv` but for other images' rows, for a count that is not a whole
        number >= 0, an image with two rows, or an image without one.
    """
    stems, values = _read_image_table(path, ("count",), images, "counts", others=True)
    counts = values[:, 0]
    bad = (counts < 0) | (counts != np.round(counts))
    if bad.any():
        line = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"data row {line + 1}: count must be a whole number >= 0, got {counts[line]:g}")
    used = pd.notna(stems)
    stems, counts = stems[used].astype(str), counts[used]
    unique, first, seen = np.unique(stems, return_index=True, return_counts=True)
    if (seen > 1).any():
        raise DataError(path, f"image {unique[seen > 1][0]!r} has more than one row")
    lacking = sorted(set(images) - set(unique))
    if lacking:
        raise DataError(path, f"no count for image {images[lacking[0]].name} ({len(lacking)} images lack one)")
    return {stem: int(counts[i]) for stem, i in zip(unique, first)}, int((~used).sum())


def _check_no_duplicates(path, keys, coords):
    """Refuse two rows of one image at the same row and col, naming their data rows.

    Two cells do not share a centre: such a row is a copy (a table exported or
    appended twice), and counted, it would double its cell.
    """
    table = pd.DataFrame({"image": keys, "row": coords[:, 0], "col": coords[:, 1]})
    copies = table.duplicated(keep="first")
    if copies.any():
        first = table.iloc[int(np.flatnonzero(copies)[0])]
        rows = (np.flatnonzero((table == first).all(axis=1).to_numpy()) + 1).tolist()
        listed = ", ".join(map(str, rows[:-1])) + f" and {rows[-1]}"
        raise DataError(
            path,
            f"data rows {listed} are the same dot (image {first['image']}, row {first['row']:g}, col "
            f"{first['col']:g}); {copies.sum()} rows in all repeat an earlier row: remove the copies",
        )


def read_dots_csv(path, images):
    """Dots per image from a CSV of ``image,row,col``, one row per cell.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV: a header naming ``image``, ``row`` and ``col`` (other columns
        ignored); ``image`` is the image's file name or stem, ``row`` and
        ``col`` pixel indices (fractions allowed).
    images : dict of str to Path
        The images, by stem (see :func:`data.folders.list_images`).

    Returns
    -------
    dots : dict of str to ndarray of float64, shape (K, 2)
        ``(row, col)`` of every cell, by image stem; images without a row are absent.

    Raises
    ------
    DataError
        If the CSV is missing, empty, unparsable, lacks a column, has no row, a
        non-numeric coordinate, names an image that is not in `images`, or has
        two rows of one image at the same row and col (see :func:`_check_no_duplicates`).
    """
    keys, coords = _read_image_table(path, ("row", "col"), images, "dots")
    _check_no_duplicates(path, keys, coords)
    return {stem: coords[keys == stem] for stem in np.unique(keys)}
