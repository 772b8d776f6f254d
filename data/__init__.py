"""Load, validate and split the nuclei tile data.

The package only reads and checks files; models, counting and the search
live elsewhere. A copy of the dsb2018-fluo tiles ships in ``embedded/`` so a
fresh clone runs offline; see ``embedded/README.md``.
"""

from pathlib import Path

from .errors import DataError, check_distinct_outputs
from .files import fingerprint, load_counts_csv
from .folds import assign_folds, fold_split
from .groups import find_overlap_groups
from .load import load_scales, load_test, load_tile_ints, load_train, load_train_or_dots
from .points import crowding, label_centres, load_points, point_counts, select_points
from .split import Split, load_split, source_groups, split_groups, split_indices

# Resolved from this file, not the working directory, so the paths hold
# from a clone, an editable install and any cwd.
EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
DEFAULT_TRAIN = EMBEDDED_DIR / "train_data.npz"
DEFAULT_TEST = EMBEDDED_DIR / "test_images.npz"
DEFAULT_TEST_COUNTS = EMBEDDED_DIR / "test_counts.csv"
# Masks/labels/points of the test tiles, for scoring segmentations.
DEFAULT_TEST_TRUTH = EMBEDDED_DIR / "test_truth.npz"

__all__ = [
    "DataError",
    "check_distinct_outputs",
    "load_train",
    "load_train_or_dots",
    "crowding",
    "load_points",
    "label_centres",
    "point_counts",
    "load_tile_ints",
    "load_scales",
    "find_overlap_groups",
    "load_test",
    "load_counts_csv",
    "fingerprint",
    "split_indices",
    "split_groups",
    "Split",
    "assign_folds",
    "fold_split",
    "load_split",
    "source_groups",
    "select_points",
    "EMBEDDED_DIR",
    "DEFAULT_TRAIN",
    "DEFAULT_TEST",
    "DEFAULT_TEST_COUNTS",
    "DEFAULT_TEST_TRUTH",
]
