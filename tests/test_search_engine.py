import json
import time

import networkx as nx
import numpy as np
import pytest
from PIL import Image

from search.config import SearchConfig
from search.engine import run_search
from search.image_source import ImageSource
from search.priority import ancestor_decay, heatmap_evidence, max_evidence, parent_only
from search.session import SearchSession
from search.trace import SearchTrace
from search.tree import is_leaf, leaf_side, split_box
from tests.fakes import FakeLocalizer


def image(w, h):
    return ImageSource(Image.new("RGB", (w, h)))


CFG = dict(overlap=0.0, min_leaf_side=224, leaf_divisor=4, context_cue=False)


# ---- tree geometry ---------------------------------------------------------------------------

def test_split_square_and_strips():
    cfg = SearchConfig(overlap=0.0)
    kids = split_box((0, 0, 1000, 800), cfg)
    assert kids == [(0, 0, 500, 400), (500, 0, 1000, 400), (0, 400, 500, 800), (500, 400, 1000, 800)]
    wide = split_box((0, 0, 3000, 1000), cfg)
    assert len(wide) == 4 and all(b[1] == 0 and b[3] == 1000 for b in wide)
    tall = split_box((0, 0, 500, 1500), cfg)
    assert all(b[0] == 0 and b[2] == 500 for b in tall) and tall[1][1] == 375


def test_overlap_children_inside_parent_and_overlapping():
    parent = (100, 50, 1100, 850)
    kids = split_box(parent, SearchConfig(overlap=0.1))
    for k in kids:
        assert parent[0] <= k[0] < k[2] <= parent[2] and parent[1] <= k[1] < k[3] <= parent[3]
    assert kids[0][2] > kids[1][0]  # horizontal neighbours overlap
    assert kids[0][3] > kids[2][1]  # vertical neighbours overlap
    assert kids[0][0] == 100 and kids[3][3] == 850  # union still covers the parent


def test_reference_tree_has_21_nodes():
    cfg = SearchConfig(strategy="bfs", max_nodes=1000, **CFG)
    assert leaf_side(2246, 1582, cfg) == 396
    res = run_search(FakeLocalizer({}), image(2246, 1582), "ghost", cfg)
    assert res.nodes_visited == 21 and res.stop_reason == "exhausted" and not res.found
    assert res.trace.graph.number_of_nodes() == 21
    assert res.model_calls == 1 + 5  # root + one batched call per expanded node (root + 4 children)
    assert res.nodes_scored == 21


# ---- priorities ----------------------------------------------------------------------------

def test_heatmap_evidence_reads_the_child_cells():
    heat = np.full((4, 4), -10.0, dtype=np.float32)
    heat[0:2, 2:4] = 10.0  # top-right quadrant hot
    region = (0, 0, 400, 400)
    assert heatmap_evidence(heat, region, (200, 0, 400, 200)) == pytest.approx(1.0, abs=1e-3)
    assert heatmap_evidence(heat, region, (0, 200, 200, 400)) == pytest.approx(0.0, abs=1e-3)
    # a child smaller than one cell still reads one cell
    assert heatmap_evidence(heat, region, (390, 10, 395, 15)) == pytest.approx(1.0, abs=1e-3)


def test_scorers():
    cfg = SearchConfig(level_weight_base=4.0)
    assert ancestor_decay([1.0, 1.0, 1.0], cfg) == pytest.approx(1 + 0.25 + 0.0625)
    assert parent_only([0.2, 0.9], cfg) == 0.9 and max_evidence([0.2, 0.9, 0.1], cfg) == 0.9


# ---- the loop --------------------------------------------------------------------------------

TARGET = (1300, 300, 1340, 340)  # inside the top-right quadrant of a 2048 x 2048 image


def test_vstar_goes_straight_to_the_target():
    loc = FakeLocalizer({"cup": [TARGET]}, detect_side=600)
    res = run_search(loc, image(2048, 2048), "cup", SearchConfig(**CFG))
    assert res.found and res.stop_reason == "confident" and not res.fallback
    assert res.box_xyxy == TARGET
    assert res.nodes_visited == 3  # root, top-right child, the grandchild holding the cup
    path = [res.trace.graph.nodes[n]["box_xyxy"] for n in res.trace.visited_nodes()]
    assert path[1] == [1024, 0, 2048, 1024]
    bfs = run_search(FakeLocalizer({"cup": [TARGET]}, detect_side=600), image(2048, 2048), "cup",
                     SearchConfig(strategy="bfs", **CFG))
    assert bfs.found and bfs.nodes_visited > res.nodes_visited


def test_stop_rule_is_strictly_above_high_and_fallback_uses_low():
    loc = FakeLocalizer({"cup": [TARGET]}, detect_side=600, score=0.5)
    res = run_search(loc, image(2048, 2048), "cup", SearchConfig(confidence_high=0.5, confidence_low=0.3, **CFG))
    assert res.stop_reason == "exhausted"  # 0.5 is not > 0.5: the whole tree is searched
    assert res.found and res.fallback and res.box_xyxy == TARGET and res.score == 0.5
    low = run_search(FakeLocalizer({"cup": [TARGET]}, detect_side=600, score=0.2), image(2048, 2048), "cup",
                     SearchConfig(**CFG))
    assert not low.found and low.box_xyxy is None


@pytest.mark.parametrize("field, value, reason", [("max_nodes", 2, "max_nodes"), ("max_model_calls", 1, "max_model_calls")])
def test_budgets_stop_without_raising(field, value, reason):
    loc = FakeLocalizer({"cup": [TARGET]}, detect_side=100)  # never legible: search would go on
    res = run_search(loc, image(2048, 2048), "cup", SearchConfig(**{**CFG, field: value}))
    assert res.stop_reason == reason and not res.found
    assert res.model_calls <= SearchConfig(**{**CFG, field: value}).max_model_calls
    if field == "max_nodes":
        assert res.nodes_visited == 2


def test_deadline_budget():
    class Slow(FakeLocalizer):
        def locate(self, target, regions):
            time.sleep(0.02)
            return super().locate(target, regions)

    res = run_search(Slow({"cup": [TARGET]}, detect_side=100), image(2048, 2048), "cup",
                     SearchConfig(deadline_s=0.05, **CFG))
    assert res.stop_reason == "deadline" and res.seconds < 1.0
    assert res.localizer_seconds <= res.seconds


def test_context_cue_fires_on_weak_heatmap_and_guides():
    context = np.full((8, 8), -6.0, dtype=np.float32)
    context[0:4, 4:8] = 6.0  # "likely in the top right"
    loc = FakeLocalizer({"cup": [TARGET]}, detect_side=600, informative=False, context=context)
    cfg = SearchConfig(**{**CFG, "context_cue": True})
    res = run_search(loc, image(2048, 2048), "cup", cfg)
    assert loc.n_calls("suggest") >= 1
    assert res.trace.graph.nodes[0]["cue"] == "context"
    assert res.model_calls == loc.n_calls("suggest") + loc.n_calls("locate")
    assert res.found and res.trace.graph.nodes[res.trace.visited_nodes()[1]]["box_xyxy"] == [1024, 0, 2048, 1024]


def test_ties_break_by_creation_order():
    loc = FakeLocalizer({}, informative=False)
    res = run_search(loc, image(2048, 2048), "ghost", SearchConfig(max_nodes=5, priority_scorer="parent_only", **CFG))
    assert res.trace.visited_nodes() == [0, 1, 2, 3, 4]


def test_blind_orders():
    bfs = run_search(FakeLocalizer({}), image(2048, 2048), "x", SearchConfig(strategy="bfs", max_nodes=7, **CFG))
    assert bfs.trace.visited_nodes() == [0, 1, 2, 3, 4, 5, 6]
    dfs = run_search(FakeLocalizer({}), image(2048, 2048), "x", SearchConfig(strategy="dfs", max_nodes=4, **CFG))
    order = dfs.trace.visited_nodes()
    levels = [dfs.trace.graph.nodes[n]["level"] for n in order]
    assert levels == [0, 1, 2, 2]


def test_random_strategies_are_seeded():
    def order(seed):
        r = run_search(FakeLocalizer({}), image(2048, 2048), "x",
                       SearchConfig(strategy="random-bfs", seed=seed, max_nodes=5, **CFG))
        return [tuple(r.trace.graph.nodes[n]["box_xyxy"]) for n in r.trace.visited_nodes()]

    assert order(1) == order(1)
    assert any(order(1) != order(s) for s in range(2, 6))


def test_multi_instance_finds_all():
    boxes = [(100, 100, 140, 140), (1500, 200, 1540, 240), (900, 1700, 940, 1740)]
    loc = FakeLocalizer({"cup": boxes}, detect_side=600)
    res = run_search(loc, image(2048, 2048), "cup", SearchConfig(multi_instance=True, max_nodes=100, **{**CFG, "overlap": 0.1}))
    assert res.found and len(res.instances) == 3
    assert sorted(b for b, _ in res.instances) == sorted(boxes)


def test_vstar_needs_fewer_nodes_than_bfs_on_average():
    rng = np.random.default_rng(0)
    counts = {"vstar": [], "bfs": []}
    for _ in range(30):
        x, y = rng.uniform(0, 2000, 2)
        box = (x, y, x + 30, y + 30)
        for strat in counts:
            r = run_search(FakeLocalizer({"t": [box]}, detect_side=600), image(2048, 2048), "t",
                           SearchConfig(strategy=strat, overlap=0.1, context_cue=False, max_nodes=100))
            assert r.found
            counts[strat].append(r.nodes_visited)
    assert np.mean(counts["vstar"]) < 0.7 * np.mean(counts["bfs"])


# ---- traces and sessions -----------------------------------------------------------------------

def test_trace_round_trip_and_graphml(tmp_path):
    res = run_search(FakeLocalizer({"cup": [TARGET]}, detect_side=600), image(2048, 2048), "cup", SearchConfig(**CFG))
    res.trace.write_json(tmp_path / "t.json")
    back = SearchTrace.from_json_dict(json.loads((tmp_path / "t.json").read_text()))
    assert back.visited_nodes() == res.trace.visited_nodes()
    assert back.graph.graph["found"] is True and sorted(back.graph.edges()) == sorted(res.trace.graph.edges())
    assert set(back.heatmaps) == set(res.trace.heatmaps)
    res.trace.write_graphml(tmp_path / "g.graphml")
    g = nx.read_graphml(tmp_path / "g.graphml")
    assert g.number_of_nodes() == res.trace.graph.number_of_nodes()
    assert json.loads(g.nodes["0"]["box_xyxy"]) == [0, 0, 2048, 2048]
    j = res.to_json()
    assert j["nodes_visited"] == 3 and j["box_xyxy"] == list(TARGET)


def test_session_sets_image_once_and_shares_cache():
    loc = FakeLocalizer({"cup": [TARGET], "pen": [(1400, 400, 1430, 430)]}, detect_side=600)
    session = SearchSession(loc, image(2048, 2048), SearchConfig(**CFG))
    results = session.search_many(["cup", "pen", "Cup"])
    assert [r.target for r in results] == ["cup", "pen"] and all(r.found for r in results)
    assert loc.set_image_calls == 1
    assert session.stats().encode_cache_hits > 0
    assert session.summary()["nodes_visited"] == sum(r.nodes_visited for r in results)
