"""Expansion orders: the V* priority queue and the blind baselines (search/frontier.py), alone and in
the engine on a tiny tree."""

import pytest

from search.config import SearchConfig
from search.engine import run_search
from search.frontier import BreadthFrontier, DepthFrontier, PriorityFrontier, make_frontier
from search.tree import Node
from seal.core.errors import ConfigError
from tests.fakes import FakeLocalizer, blank_image


def node(i, priority=0.0):
    return Node(node_id=i, box=(0, 0, 1, 1), tile=(0, 0, 1, 1), level=0, parent=-1, ancestors=(), leaf=True,
                priority=priority)


def drain(frontier):
    out = []
    while len(frontier):
        out.append(frontier.pop().node_id)
    return out


def test_priority_frontier_pops_the_best_anywhere():
    f = PriorityFrontier()
    f.push([node(1, 0.2), node(2, 0.9), node(3, 0.5)])
    assert f.pop().node_id == 2
    f.push([node(4, 0.7), node(5, 0.1)])
    assert drain(f) == [4, 3, 1, 5]


def test_priority_ties_pop_in_creation_order():
    f = PriorityFrontier()
    f.push([node(7, 0.5), node(3, 0.5)])
    f.push([node(5, 0.5), node(1, 0.9), node(9, 0.5)])
    assert drain(f) == [1, 3, 5, 7, 9]


def test_breadth_and_depth_frontiers():
    b = BreadthFrontier()
    b.push([node(1), node(2)])
    assert b.pop().node_id == 1
    b.push([node(3), node(4)])
    assert drain(b) == [2, 3, 4]
    d = DepthFrontier()
    d.push([node(1), node(2)])
    assert d.pop().node_id == 1
    d.push([node(3), node(4)])
    assert drain(d) == [3, 4, 2]


def test_unknown_strategy_is_a_config_error():
    with pytest.raises(ConfigError, match="search.strategy"):
        make_frontier("astar")


# ---- in the engine: 896 x 896, leaf side 224 -> 1 + 4 + 16 nodes, ids in creation order --------

def visit(strategy, seed=0, max_nodes=1000):
    cfg = SearchConfig(strategy=strategy, max_nodes=max_nodes, context_cue=False, min_leaf_side=224)
    res = run_search(FakeLocalizer({}), blank_image(896, 896), "ghost", cfg, seed=seed)
    return res, res.trace.visited_nodes()


def test_bfs_is_level_order_in_reading_order():
    res, order = visit("bfs")
    assert order == list(range(21))
    g = res.trace.graph
    levels = [g.nodes[n]["level"] for n in order]
    assert levels == [0] + [1] * 4 + [2] * 16
    corners = [c for n in order[1:5] for c in g.nodes[n]["box_xyxy"][:2]]  # top-left corners, level 1
    # row-major; tiles of 448 px grown by 0.05 x 448 = 22.4 px on their inner sides
    assert corners == pytest.approx([0, 0, 425.6, 0, 0, 425.6, 425.6, 425.6])


def test_dfs_is_depth_first_in_reading_order():
    res, order = visit("dfs")
    # root 0; its children 1..4; the children of 1 are created when 1 is visited (5..8), etc.
    assert order == [0, 1, 5, 6, 7, 8, 2, 9, 10, 11, 12, 3, 13, 14, 15, 16, 4, 17, 18, 19, 20]


@pytest.mark.parametrize("strategy", ["random-bfs", "random-dfs"])
def test_random_strategies_are_deterministic_per_seed(strategy):
    orders = {seed: [tuple(r.trace.graph.nodes[n]["box_xyxy"]) for n in o]
              for seed in range(6) for r, o in [visit(strategy, seed)]}
    r3, o3 = visit(strategy, 3)
    assert [tuple(r3.trace.graph.nodes[n]["box_xyxy"]) for n in o3] == orders[3]
    assert len({tuple(o) for o in orders.values()}) > 1  # seeds change the order
    sequential = [tuple(r.trace.graph.nodes[n]["box_xyxy"]) for r, o in [visit(strategy.split("-")[1])] for n in o]
    assert any(orders[s] != sequential for s in orders)  # and it is not the sequential order
    assert all(len(o) == 21 for o in orders.values())


def test_random_bfs_keeps_level_order_and_random_dfs_keeps_subtrees_contiguous():
    for seed in range(4):
        res, order = visit("random-bfs", seed)
        levels = [res.trace.graph.nodes[n]["level"] for n in order]
        assert levels == sorted(levels)
        res, order = visit("random-dfs", seed)
        g = res.trace.graph
        for child in g.successors(0):  # each level-1 node is followed by its 4 children
            i = order.index(child)
            assert set(order[i + 1:i + 5]) == set(g.successors(child))


def test_blind_strategies_ignore_priorities():
    # the target's evidence points to the bottom-right quadrant: vstar goes there first, bfs does not care
    loc = FakeLocalizer({"t": [(800, 800, 830, 830)]}, detect_side=250)
    cfg = SearchConfig(strategy="bfs", context_cue=False, max_nodes=1000)
    res = run_search(loc, blank_image(896, 896), "t", cfg)
    assert res.trace.visited_nodes()[:5] == [0, 1, 2, 3, 4]
    assert res.found and res.nodes_visited == 21  # the last leaf of level order holds the target
