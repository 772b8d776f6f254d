"""Read the pixels of image files: any bit depth, palette PNG indices, and 8-bit grey.

Every problem is a one-line :class:`DataError` naming the file.
"""

import io

import cv2
import numpy as np
from PIL import Image

from .errors import DataError, check_file
from .tiling import resize, scaled_shape

__all__ = [
    "MAX_PIXELS",
    "read_image",
    "one_channel",
    "to_gray_uint8",
    "read_gray",
    "checked_shape",
    "read_scaled",
]

# Images of more than 8 bits are stretched linearly between these percentiles:
# a few hot pixels (common on fluorescence cameras) would otherwise squeeze every
# nucleus into a handful of grey levels, as a plain min/max stretch does.
STRETCH_PERCENTILES = (0.1, 99.9)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Offset of the colour type byte: signature (8), IHDR length and name (8), width, height (8), bit depth (1).
PNG_COLOUR_TYPE = 25

# Largest image read whole for prediction or import, as decoded and as rescaled
# (16 Mi pixels, 4096x4096): a 4000x4000 image peaked at 0.93 GB resident, predicted
# and counted whole with a quick-profile net (benchmarks/predict_speed.py); the
# importer keeps to it so what it tiles, predict can count whole.
MAX_PIXELS = 16 * 2**20


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


def one_channel(image, path):
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
    image = one_channel(image, path)
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


def checked_shape(path, shape, scale=1.0, max_pixels=MAX_PIXELS):
    """The ``(H, W)`` of an image of `shape` rescaled by `scale`, refused over `max_pixels`.

    Parameters
    ----------
    path : str or os.PathLike
        The image file, for messages.
    shape : tuple of int
        Its decoded shape.
    scale : float, optional
        Rescale factor (see :func:`data.tiling.scaled_shape`).
    max_pixels : int, optional
        Largest image accepted, as decoded and as rescaled.

    Returns
    -------
    shape : tuple of int

    Raises
    ------
    DataError
        For an image over `max_pixels` as decoded or as rescaled (checked before
        any rescaled array is allocated).
    """
    scaled = scaled_shape(shape, scale)
    for (h, w), how in ((shape[:2], ""), (scaled, f" rescaled by {scale:g}")):
        if h * w > max_pixels:
            raise DataError(path, f"image is {h}x{w} pixels{how}, over the limit of {max_pixels / 2**20:g} megapixels")
    return scaled


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
        As :func:`read_image` and :func:`checked_shape`.
    """
    image = read_image(path)
    shape = checked_shape(path, image.shape, scale, max_pixels)
    return resize(to_gray_uint8(image, path), shape)
