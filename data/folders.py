"""Find the image files of folders and pair every image with its annotation file.

Two layouts are paired: images with a folder of instance label masks of the
same file stem (StarDist/Cellpose), and images with dots images, one dot per
cell, of the same stem or a dots name. Every problem is a one-line
:class:`DataError` naming the file.
"""

from pathlib import Path

from .errors import DataError, check_file

__all__ = [
    "IMAGE_SUFFIXES",
    "list_images",
    "image_files",
    "dots_image_stem",
    "pair_folders",
]

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


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
