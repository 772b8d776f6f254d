"""data.groups: tiles cut from one image are found by their overlap."""

import numpy as np

import data


def _cut(image, size, step):
    """Overlapping size x size windows of ``image``, ``step`` px apart in both directions."""
    h, w = image.shape
    return [
        image[r : r + size, c : c + size] for r in range(0, h - size + 1, step) for c in range(0, w - size + 1, step)
    ]


def test_overlap_groups_finds_tiles_of_one_image():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(44, 44), dtype=np.uint8) for _ in range(3)]
    tiles = [t for image in images for t in _cut(image, 32, 12)]  # 3 x 4 tiles, overlap 20 px
    order = rng.permutation(len(tiles))
    groups = data.find_overlap_groups(np.stack(tiles)[order])
    truth = np.repeat(np.arange(3), 4)[order]
    assert len(np.unique(groups)) == 3
    for g in range(3):  # each found group is exactly one image's tiles
        assert len(np.unique(truth[groups == g])) == 1


def test_overlap_groups_none_in_unrelated_tiles():
    rng = np.random.default_rng(1)
    tiles = rng.integers(0, 256, size=(20, 32, 32), dtype=np.uint8)
    tiles[:5] = 0  # flat dark tiles share lines, but lines without texture never link
    tiles[5:8, :, 0] = 7
    np.testing.assert_array_equal(data.find_overlap_groups(tiles), np.arange(20))
    # A non-overlapping cut of one image shares no pixels, so it cannot be linked either.
    image = rng.integers(0, 256, size=(64, 64), dtype=np.uint8)
    assert len(np.unique(data.find_overlap_groups(np.stack(_cut(image, 32, 32))))) == 4
