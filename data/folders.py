"""Find, pair and read folders of microscopy images and their annotations.

Two layouts are read: images with a folder of instance label masks of the same
file stem (StarDist/Cellpose), and images with dot annotations, one dot per
cell, as dots images or as a CSV of ``image,row,col``. Coordinates are pixel
indices, ``(row, col)``, with pixel centres at integers. Every problem is a
one-line :class:`DataError` naming the file.
"""

import io
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from .errors import DataError, check_file
from .tiling import instance_centroids, resize, scaled_shape

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "list_images",
    "image_files",
    "pair_folders",
    "read_image",
    "to_gray_uint8",
    "read_gray",
    "read_scaled",
    "labels_from_image",
    "split_binary_mask",
    "dots_from_image",
    "annotation_counts",
    "read_dots_csv",
    "read_image_counts",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")

# Images of more than 8 bits are stretched linearly between these percentiles:
# a few hot pixels (common on fluorescence cameras) would otherwise squeeze every
# nucleus into a handful of grey levels, as a plain min/max stretch does.
STRETCH_PERCENTILES = (0.1, 99.9)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Offset of the colour type byte: signature (8), IHDR length and name (8), width, height (8), bit depth (1).
PNG_COLOUR_TYPE = 25

# Largest image read whole for prediction, as decoded and as rescaled (16 Mi
# pixels, 4096x4096): a 4000x4000 image peaked at 0.93 GB resident, predicted
# and counted whole with a quick-profile net (benchmarks/predict_speed.py).
MAX_PIXELS = 16 * 2**20


def list_images(folder):
    """The image files of a folder, by file stem.

    Hidden files and files whose suffix is not in ``IMAGE_SUFFIXES`` (notes,
    CSV files, thumbnails databases) are skipped.

    Parameters
    ----------
    folder : str or os.PathLike

    Returns
    -------
    files : dict of str to Path
        Sorted by stem.

    Raises
    ------
    DataError
        If the folder is missing, holds no image file, or two images share a stem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "folder not found" if not folder.exists() else "not a folder")
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem in files:
            raise DataError(path, f"two images share the stem {path.stem!r} (also {files[path.stem].name})")
        files[path.stem] = path
    if not files:
        raise DataError(folder, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def image_files(path):
    """The images at `path`: a folder's (see :func:`list_images`) or one image file.

    Parameters
    ----------
    path : str or os.PathLike
        A folder, or a file whose suffix is in ``IMAGE_SUFFIXES``.

    Returns
    -------
    files : dict of str to Path
        By stem, sorted.

    Raises
    ------
    DataError
        As :func:`list_images` for a folder; for a missing file or one of another suffix.
    """
    path = Path(path)
    if path.is_dir():
        return list_images(path)
    path = check_file(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(path, f"not an image file ({', '.join(IMAGE_SUFFIXES)}) nor a folder")
    return {path.stem: path}


def dots_image_stem(stem):
    """The stem of the image a dots file annotates, from its own stem, or None.

    ``001dots`` annotates ``001cell`` (VGG synthetic cells) and ``NAME_dots_000``
    annotates ``NAME_000`` (bone marrow); other names are not dots names.

    Examples
    --------
    >>> dots_image_stem("001dots"), dots_image_stem("BM_dots_007"), dots_image_stem("001cell")
    ('001cell', 'BM_007', None)
    """
    if stem.endswith("dots"):
        return stem[: -len("dots")] + "cell"
    head, sep, tail = stem.rpartition("_dots_")
    return f"{head}_{tail}" if sep else None


def pair_folders(images_dir, annotations_dir, kind):
    """Pair every image with its annotation file.

    Parameters
    ----------
    images_dir, annotations_dir : str or os.PathLike
        The folders. Masks have the image's stem in another folder. Dots images
        have the image's stem in another folder, or a dots name (see
        :func:`dots_image_stem`) in either folder, which may then be one folder.
    kind : {"mask", "dots"}
        What the annotations are, for messages and the naming rules.

    Returns
    -------
    pairs : list of (Path, Path)
        ``(image, annotation)``, sorted by image stem.

    Raises
    ------
    DataError
        For a missing folder, an empty one, an image without annotation or the
        reverse, or two annotations for one image.
    """
    images_dir, annotations_dir = Path(images_dir), Path(annotations_dir)
    images = list_images(images_dir)
    if annotations_dir.resolve() == images_dir.resolve():
        if kind == "mask":
            raise DataError(annotations_dir, "masks must be in their own folder, with the images' file stems")
        annotations = {s: p for s, p in images.items() if dots_image_stem(s) is not None}
        images = {s: p for s, p in images.items() if dots_image_stem(s) is None}
        if not images:
            raise DataError(images_dir, "no image files besides dots images in this folder")
    else:
        annotations = list_images(annotations_dir)
    paired = {}
    for stem, path in annotations.items():
        mapped = dots_image_stem(stem) if kind == "dots" else None
        target = mapped if mapped in images else stem
        if target not in images:
            raise DataError(path, f"{kind} file without an image: no {target}.* in {images_dir}")
        if target in paired:
            raise DataError(path, f"second {kind} file for image {images[target].name} (also {paired[target].name})")
        paired[target] = path
    for stem, path in images.items():
        if stem not in paired:
            raise DataError(path, f"image without a {kind} file in {annotations_dir}")
    return [(images[s], paired[s]) for s in sorted(images)]


def _is_palette_png(buffer):
    """Whether the bytes are a PNG of colour type 3 (palette), read from its IHDR chunk."""
    return buffer[:8].tobytes() == PNG_SIGNATURE and buffer.size > PNG_COLOUR_TYPE and buffer[PNG_COLOUR_TYPE] == 3


def _palette_indices(buffer, path):
    """The palette indices of a palette PNG's pixels, not their colours (which cv2 returns)."""
    try:
        with Image.open(io.BytesIO(buffer.tobytes())) as image:
            return np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(path, f"cannot decode palette PNG ({err})") from None


def read_image(path, palette_indices=False):
    """Decode an image file as stored: any bit depth, channels kept (BGR order).

    Parameters
    ----------
    path : str or os.PathLike
    palette_indices : bool, optional
        Return a palette PNG's indices, shape (H, W), not its colours: a
        label mask saved with a palette (common for instance masks) holds its
        ids in the indices.

    Raises
    ------
    DataError
        If the file is missing, empty, unreadable or not an image cv2 decodes,
        or cv2 refuses it (over ``CV_IO_MAX_IMAGE_PIXELS``, 2**30 by default).
    """
    path = check_file(path)
    try:
        # Bytes through Python, not cv2.imread: OS errors become messages, and
        # non-ASCII paths work on every platform.
        buffer = np.fromfile(path, np.uint8)
    except OSError as err:
        raise DataError(path, f"cannot read file ({err.strerror or err})") from err
    if buffer.size == 0:
        raise DataError(path, "file is empty")
    if palette_indices and _is_palette_png(buffer):
        return _palette_indices(buffer, path)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        # cv2 raises, not returns None, for a header over its size limits (a few bytes can claim 40000x40000).
        reason = (str(err).partition("error: ")[2] or str(err)).strip()
        raise DataError(path, f"OpenCV cannot decode image ({reason}): over its size limit, or corrupt") from None
    if image is None or image.size == 0:
        raise DataError(path, "cannot decode image (corrupt, or not a PNG, TIFF, JPEG or BMP file)")
    return image


def _one_channel(image, path):
    """Collapse colour channels to one by their maximum, dropping alpha.

    The maximum, not luminance: fluorescence images are often stored as one
    coloured channel (DAPI or Hoechst in blue), which luminance would dim to
    11% (its blue weight) while the maximum keeps it at full contrast; a grey
    image saved as RGB is unchanged either way.
    """
    if image.ndim == 2:
        return image
    channels = image.shape[2]
    if image.ndim != 3 or channels not in (1, 2, 3, 4):
        raise DataError(path, f"expected a grey, RGB or RGBA image, got shape {image.shape}")
    # One channel, or grey + alpha: the first is the signal.
    return image[..., 0] if channels <= 2 else image[..., :3].max(axis=2)


def to_gray_uint8(image, path):
    """A decoded image as 8-bit greyscale, the harness's tiles.

    Colour is collapsed by the maximum over the colour channels (alpha dropped).
    8-bit images keep their values; any other depth (16-bit, float) is
    stretched linearly so the image's 0.1th percentile maps to 0 and its
    99.9th to 255 (``STRETCH_PERCENTILES``), clipped; when the two are equal
    (signal in under 0.1% of the pixels) its minimum and maximum are used
    instead, and a flat image becomes 0.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
    path : Path
        The file, for messages.

    Returns
    -------
    gray : ndarray of uint8, shape (H, W)
    """
    image = _one_channel(image, path)
    if image.dtype == np.uint8:
        return image
    if not np.isfinite(image).all():
        raise DataError(path, "image holds NaN or inf values")
    lo, hi = np.percentile(image, STRETCH_PERCENTILES)
    if hi <= lo:
        # A mostly dark image whose cells cover under 0.1% of it: the percentiles
        # are both background, and stretching between them would blacken the cells.
        lo, hi = image.min(), image.max()
    if hi <= lo:
        return np.zeros(image.shape, np.uint8)
    scaled = (image.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def read_gray(path):
    """The image file at `path` as 8-bit grey (see :func:`to_gray_uint8`)."""
    return to_gray_uint8(read_image(path), path)


def read_scaled(path, scale=1.0, max_pixels=MAX_PIXELS):
    """The image file at `path` as the importer reads it and rescales it by `scale`.

    Parameters
    ----------
    path : str or os.PathLike
    scale : float, optional
        Rescale factor (see :func:`data.tiling.scaled_shape` and :func:`data.tiling.resize`).
    max_pixels : int, optional
        Largest image accepted, as decoded and as rescaled.

    Returns
    -------
    gray : ndarray of uint8, shape (H, W)

    Raises
    ------
    DataError
        As :func:`read_image`, or for an image over `max_pixels`.
    """
    image = read_image(path)
    shape = scaled_shape(image.shape, scale)
    for (h, w), how in ((image.shape[:2], ""), (shape, f" rescaled by {scale:g}")):
        if h * w > max_pixels:
            raise DataError(path, f"image is {h}x{w} pixels{how}, over the limit of {max_pixels / 2**20:g} megapixels")
    return resize(to_gray_uint8(image, path), shape)


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
    signal = _one_channel(image, path)
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


def _read_image_table(path, columns, images, what):
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

    Returns
    -------
    stems : ndarray of str, shape (R,)
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
    if unknown.any():
        line = int(np.flatnonzero(unknown.to_numpy())[0])
        raise DataError(path, f"data row {line + 1}: image {names.iloc[line]!r} is not in the images folder")
    return names.map(stems).to_numpy(), values


def read_image_counts(path, images):
    """True counts per image from a CSV of ``image,count``, one row per image.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV (see :func:`read_dots_csv` for ``image``); ``count`` a whole number >= 0.
    images : dict of str to Path
        The images, by stem.

    Returns
    -------
    counts : dict of str to int
        By image stem.

    Raises
    ------
    DataError
        As :func:`read_dots_csv`, for a count that is not a whole number >= 0, an image
        with two rows, or an image without one.
    """
    stems, values = _read_image_table(path, ("count",), images, "counts")
    counts = values[:, 0]
    bad = (counts < 0) | (counts != np.round(counts))
    if bad.any():
        line = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"data row {line + 1}: count must be a whole number >= 0, got {counts[line]:g}")
    unique, first, seen = np.unique(stems, return_index=True, return_counts=True)
    if (seen > 1).any():
        raise DataError(path, f"image {unique[seen > 1][0]!r} has more than one row")
    lacking = sorted(set(images) - set(unique))
    if lacking:
        raise DataError(path, f"no count for image {images[lacking[0]].name} ({len(lacking)} images lack one)")
    return {stem: int(counts[i]) for stem, i in zip(unique, first)}


def read_dots_csv(path, images):
    """Dots per image from a CSV of ``image,row,col``, one row per cell.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV: a header naming ``image``, ``row`` and ``col`` (other columns
        ignored); ``image`` is the image's file name or stem, ``row`` and
        ``col`` pixel indices (fractions allowed).
    images : dict of str to Path
        The images, by stem (see :func:`list_images`).

    Returns
    -------
    dots : dict of str to ndarray of float64, shape (K, 2)
        ``(row, col)`` of every cell, by image stem; images without a row are absent.

    Raises
    ------
    DataError
        If the CSV is missing, empty, unparsable, lacks a column, has no row, a
        non-numeric coordinate, or names an image that is not in `images`.
    """
    keys, coords = _read_image_table(path, ("row", "col"), images, "dots")
    return {stem: coords[keys == stem] for stem in np.unique(keys)}
