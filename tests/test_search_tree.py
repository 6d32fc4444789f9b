"""Split rule, overlap and leaf rule of the search tree (search/tree.py)."""

import functools
import numpy as np
import pytest

from search.config import SearchConfig
from search.engine import run_search
from seal.core.geometry import area_xyxy
from search.tree import grow_tile, is_leaf, leaf_side, split, split_grid, split_tile
from tests.fakes import FakeLocalizer, blank_image

# These tests pin the reference tree (leaves at min(W, H) / 4); the project default is 8.
RefConfig = functools.partial(SearchConfig, leaf_divisor=4)


def test_square_tile_splits_2x2_in_reading_order():
    kids = split_tile((0, 0, 1000, 800), RefConfig())
    assert kids == [(0, 0, 500, 400), (500, 0, 1000, 400), (0, 400, 500, 800), (500, 400, 1000, 800)]


@pytest.mark.parametrize("tile, grid", [
    ((0, 0, 3000, 1000), (4, 1)),   # ratio 3 >= 2: four side-by-side strips
    ((0, 0, 2000, 1000), (4, 1)),   # exactly the ratio: strips
    ((0, 0, 1999, 1000), (2, 2)),   # just below: 2x2
    ((0, 0, 500, 1500), (1, 4)),    # tall: four stacked strips
    ((10, 20, 1010, 2020), (1, 4)),
])
def test_strips_when_aspect_reaches_the_ratio(tile, grid):
    cfg = RefConfig(split_aspect_ratio=2.0)
    assert split_grid(tile, cfg) == grid
    kids = split_tile(tile, cfg)
    cols, rows = grid
    assert len(kids) == 4
    if cols == 4:  # full height, consecutive in x
        assert all(k[1] == tile[1] and k[3] == tile[3] for k in kids)
        assert [k[0] for k in kids] == sorted(k[0] for k in kids)
    if rows == 4:
        assert all(k[0] == tile[0] and k[2] == tile[2] for k in kids)
        assert [k[1] for k in kids] == sorted(k[1] for k in kids)


def test_split_aspect_ratio_is_honoured():
    assert split_grid((0, 0, 3000, 1000), RefConfig(split_aspect_ratio=4.0)) == (2, 2)


@pytest.mark.parametrize("tile", [(0, 0, 1000, 800), (100, 50, 1100, 850), (0, 0, 3001, 997), (7, 3, 400, 1700)])
def test_tiles_partition_the_parent(tile):
    kids = split_tile(tile, RefConfig())
    assert sum(area_xyxy(k) for k in kids) == pytest.approx(area_xyxy(tile))
    assert min(k[0] for k in kids) == tile[0] and max(k[2] for k in kids) == tile[2]
    assert min(k[1] for k in kids) == tile[1] and max(k[3] for k in kids) == tile[3]
    for i, a in enumerate(kids):  # pairwise interiors disjoint
        for b in kids[i + 1:]:
            assert min(a[2], b[2]) - max(a[0], b[0]) <= 1e-9 or min(a[3], b[3]) - max(a[1], b[1]) <= 1e-9


def test_overlap_grows_children_inside_the_parent():
    cfg = RefConfig(overlap=0.2)
    parent_tile = parent_box = (100.0, 50.0, 1100.0, 850.0)
    pairs = split(parent_tile, parent_box, cfg)
    tiles, boxes = [t for t, _ in pairs], [b for _, b in pairs]
    for t, b in pairs:  # each box contains its tile and lies inside the parent's box
        assert b[0] <= t[0] and b[1] <= t[1] and b[2] >= t[2] and b[3] >= t[3]
        assert parent_box[0] <= b[0] < b[2] <= parent_box[2] and parent_box[1] <= b[1] < b[3] <= parent_box[3]
    # tile 500 x 400: grown by 0.1 x 500 = 50 px and 0.1 x 400 = 40 px on each inner side
    assert boxes[0] == (100.0, 50.0, 650.0, 490.0)
    assert boxes[3] == (550.0, 410.0, 1100.0, 850.0)
    # neighbours overlap by overlap x tile size
    assert boxes[0][2] - boxes[1][0] == pytest.approx(0.2 * 500)
    assert boxes[0][3] - boxes[2][1] == pytest.approx(0.2 * 400)
    # the union covers the parent's tile: sample points on a grid
    xs, ys = np.meshgrid(np.linspace(100, 1100, 41), np.linspace(50, 850, 33))
    covered = np.zeros(xs.shape, bool)
    for b in boxes:
        covered |= (xs >= b[0]) & (xs <= b[2]) & (ys >= b[1]) & (ys <= b[3])
    assert covered.all()
    assert tiles == split_tile(parent_tile, cfg)


def test_zero_overlap_boxes_are_the_tiles():
    pairs = split((0.0, 0.0, 800.0, 600.0), (0.0, 0.0, 800.0, 600.0), RefConfig(overlap=0.0))
    assert all(t == b for t, b in pairs)


def test_grow_tile_clamps_to_bounds():
    assert grow_tile((0, 0, 100, 100), 0.4, (0, 0, 110, 1000)) == (0, 0, 110, 120)


def test_leaf_rule():
    cfg = RefConfig()  # leaf_divisor 4, min_leaf_side 224
    assert leaf_side(2246, 1582, cfg) == 396  # ceil(1582 / 4)
    assert leaf_side(600, 500, cfg) == 224  # the minimum dominates small images
    assert leaf_side(2246, 1582, RefConfig(leaf_divisor=2, min_leaf_side=10)) == 791
    assert is_leaf((0, 0, 561.5, 395.5), 396) and not is_leaf((0, 0, 561.5, 396.5), 396)
    assert is_leaf((0, 0, 5000, 396), 396)  # the short side decides


def _levels(result):
    g = result.trace.graph
    counts = {}
    for _, a in g.nodes(data=True):
        counts[a["level"]] = counts.get(a["level"], 0) + 1
    return counts


def test_reference_image_gives_the_21_node_tree_with_defaults():
    cfg = RefConfig(strategy="bfs", max_nodes=1000)  # default overlap 0.1 must not change the tree
    res = run_search(FakeLocalizer({}), blank_image(2246, 1582), "ghost", cfg)
    assert res.nodes_visited == 21 and res.stop_reason == "exhausted" and not res.found
    assert res.trace.graph.number_of_nodes() == 21 and _levels(res) == {0: 1, 1: 4, 2: 16}
    assert sum(a["leaf"] for _, a in res.trace.graph.nodes(data=True)) == 16
    assert res.nodes_scored == 21
    # the root alone, one batched locate per expanded node (5), one suggest_region per expanded node
    # (the fake's flat heatmap is weak everywhere; its None answer still costs the call)
    loc = FakeLocalizer({})
    assert run_search(loc, blank_image(2246, 1582), "ghost", cfg).model_calls == 1 + 5 + 5
    assert loc.n_calls("locate") == 6 and loc.n_calls("suggest") == 5
    no_cue = run_search(FakeLocalizer({}), blank_image(2246, 1582), "ghost",
                        RefConfig(strategy="bfs", max_nodes=1000, context_cue=False))
    assert no_cue.model_calls == 6 and no_cue.nodes_visited == 21


def test_tree_shape_does_not_depend_on_overlap():
    shapes = []
    for overlap in (0.0, 0.1, 0.45):
        res = run_search(FakeLocalizer({}), blank_image(1800, 1000), "x",
                         RefConfig(strategy="bfs", max_nodes=1000, overlap=overlap))
        shapes.append((res.nodes_visited, _levels(res)))
    assert shapes[0] == shapes[1] == shapes[2]


def test_strip_image_tree():
    # 4000 x 1000: leaf side max(250, 224) = 250. Root -> 4 strips of 1000 x 1000 -> 2x2 of 500 -> 2x2 of 250 (leaves)
    res = run_search(FakeLocalizer({}), blank_image(4000, 1000), "x", RefConfig(strategy="bfs", max_nodes=1000))
    assert _levels(res) == {0: 1, 1: 4, 2: 16, 3: 64}
    g = res.trace.graph
    first_level = [g.nodes[n]["box_xyxy"] for n in sorted(g.successors(0))]
    assert all(b[1] == 0 and b[3] == 1000 for b in first_level)  # strips span the full height


def test_inner_nodes_have_four_children_and_leaves_none():
    res = run_search(FakeLocalizer({}), blank_image(1500, 900), "x", RefConfig(strategy="bfs", max_nodes=1000))
    g = res.trace.graph
    leaves = [n for n, a in g.nodes(data=True) if a["leaf"]]
    assert all(g.out_degree(n) == 0 for n in leaves)
    assert all(g.out_degree(n) == 4 for n, a in g.nodes(data=True) if not a["leaf"])
