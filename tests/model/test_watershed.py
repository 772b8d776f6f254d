"""model.watershed: touching cells split, cells cut by the tile edge and specks dropped."""

from helpers import discs

from model.count import count_components
from model.watershed import count_watershed


def test_touching_discs_merge_for_components_but_split_for_watershed():
    touching = discs((32, 26), (32, 37))  # centres 11 px apart, radius 6: overlapping
    assert count_components(touching).tolist() == [1]
    assert count_watershed(touching).tolist() == [2]


def test_chain_of_three_touching_discs_splits_into_three():
    chain = discs((32, 16), (32, 27), (32, 38))
    assert count_components(chain).tolist() == [1]
    assert count_watershed(chain).tolist() == [3]


def test_small_fragment_at_tile_edge_not_counted_by_watershed():
    # Two whole discs inside, and a disc centred 4 px outside the top edge,
    # so only a thin cap of it (~14% of its area, centroid outside) is visible.
    prob = discs((32, 16), (40, 44), (-4, 40))
    assert count_watershed(prob).tolist() == [2]
    # The edge rule is what drops it: switched off, the cap counts.
    assert count_watershed(prob, edge_fraction=0).tolist() == [3]
    assert count_components(prob).tolist() == [3]


def test_disc_centred_just_inside_edge_still_counted():
    prob = discs((32, 16), (40, 44), (2, 40))  # centre inside, over half visible
    assert count_watershed(prob).tolist() == [3]


def test_min_area_drops_specks():
    prob = discs((32, 32))
    prob[5, 5] = 1.0  # one-pixel speck
    assert count_watershed(prob, min_area=5).tolist() == [1]
    assert count_watershed(prob, min_area=0).tolist() == [2]
