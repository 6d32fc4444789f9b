"""The search loop (search/engine.py) with fake localizers: order, stop rule, fallback, context cue,
multi-instance, accounting, and V* against the blind baselines."""

import functools
import numpy as np
import pytest

from search.config import SearchConfig
from seal.core.errors import ConfigError
from search.hit_check.config import HitCheckConfig
from search.engine import StepEvent, run_search
from search.localizer import Detection
from tests.fakes import FakeLocalizer, blank_image

# These tests pin the reference tree (leaves at min(W, H) / 4); the project default is 8.
RefConfig = functools.partial(SearchConfig, leaf_divisor=4)

NO_CUE = dict(context_cue=False, max_nodes=1000)
CUP = (1300.0, 300.0, 1340.0, 340.0)  # in the top-right quadrant of a 2048 x 2048 image
# 2048 px: leaf side 512; level-1 tiles 1024 px (boxes ~1126), level-2 tiles 512 px (boxes ~563)
TOP_RIGHT_BOX = [972.8, 0.0, 2048.0, 1075.2]  # level-1 tile (1024, 0, 2048, 1024) grown by 51.2 px


def boxes_in_visit_order(res):
    g = res.trace.graph
    return [g.nodes[n]["box_xyxy"] for n in res.trace.visited_nodes()]


# ---- expansion order -----------------------------------------------------------------------------

def test_vstar_goes_straight_to_the_hot_quadrant():
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600)  # legible only in level-2 boxes
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(**NO_CUE))
    assert res.found and res.confident and res.stop_reason == "confident" and not res.fallback
    assert res.box_xyxy == CUP and res.score == pytest.approx(0.9)
    assert res.nodes_visited == 3  # root, top-right child, the grandchild holding the cup
    path = boxes_in_visit_order(res)
    assert path[1] == pytest.approx(TOP_RIGHT_BOX)
    assert path[2][0] <= CUP[0] and path[2][2] >= CUP[2] and path[2][1] <= CUP[1] and path[2][3] >= CUP[3]
    bfs = run_search(FakeLocalizer({"cup": [CUP]}, detect_side=600), blank_image(2048, 2048), "cup",
                     RefConfig(strategy="bfs", **NO_CUE))
    assert bfs.found and bfs.nodes_visited > res.nodes_visited + 3


def quadrant_scene(tl, tr, bl, br, name="x"):
    """Full-image logits, one value per quadrant, for FakeLocalizer(scene_heatmaps=...)."""
    return {name: np.array([[tl, tr], [bl, br]], dtype=np.float32)}


def level1_order(res):
    g = res.trace.graph
    return [g.nodes[n]["box_xyxy"][:2] for n in res.trace.visited_nodes() if g.nodes[n]["level"] == 1]


def test_handcrafted_heatmap_sets_the_order():
    # evidence per quadrant: bottom-left > bottom-right > top-right > top-left, nothing is ever found
    loc = FakeLocalizer({}, scene_heatmaps=quadrant_scene(-2.0, 0.0, 3.0, 1.0))
    res = run_search(loc, blank_image(2048, 2048), "x", RefConfig(**NO_CUE))
    order = level1_order(res)
    assert [(x > 0, y > 0) for x, y in order] == [(False, True), (True, True), (True, False), (False, False)]
    # ancestor_decay: a hot branch's children (root evidence + parent evidence / 4) outrank the colder
    # level-1 nodes, so each level-1 node is followed by its 4 children
    g, visited = res.trace.graph, res.trace.visited_nodes()
    for i, n in enumerate(visited):
        if g.nodes[n]["level"] == 1:
            assert set(visited[i + 1:i + 5]) == set(g.successors(n))
    assert res.nodes_visited == 21 and res.stop_reason == "exhausted"


def test_grandchildren_read_the_root_heatmap_over_their_own_box():
    class RootOnly(FakeLocalizer):
        """The root's heatmap is hot around (700, 700) (the bottom-right grandchild of the top-left
        quadrant); every other heatmap is flat, so only the root's evidence can tell siblings apart."""

        def _heatmap(self, target, region):
            if region[2] - region[0] < 2048:
                return np.full((16, 16), -4.0, dtype=np.float32)
            heat = np.full((16, 16), -4.0, dtype=np.float32)
            heat[5, 5] = 8.0  # cell (640..768, 640..768)
            return heat

    res = run_search(RootOnly({}), blank_image(2048, 2048), "x", RefConfig(**NO_CUE))
    g, visited = res.trace.graph, res.trace.visited_nodes()
    assert g.nodes[visited[1]]["box_xyxy"][:2] == [0.0, 0.0]  # the top-left quadrant
    third = g.nodes[visited[2]]["box_xyxy"]
    assert third[0] <= 640 and third[2] >= 768 and third[1] <= 640 and third[3] >= 768
    assert third[:2] == pytest.approx([486.4, 486.4])  # its bottom-right child, not the first in reading order


def test_ties_break_by_creation_order():
    flat = FakeLocalizer({}, informative=False)  # every child of a level gets the same priority
    res = run_search(flat, blank_image(2048, 2048), "x", RefConfig(priority_scorer="parent_only", **NO_CUE))
    assert res.trace.visited_nodes() == list(range(21))
    res = run_search(FakeLocalizer({}, informative=False), blank_image(2048, 2048), "x", RefConfig(**NO_CUE))
    # ancestor_decay sums over ancestors, so deeper nodes outrank equal-evidence shallower ones
    assert res.trace.visited_nodes() == [0, 1, 5, 6, 7, 8, 2, 9, 10, 11, 12, 3, 13, 14, 15, 16, 4, 17, 18, 19, 20]
    again = run_search(FakeLocalizer({}, informative=False), blank_image(2048, 2048), "x", RefConfig(**NO_CUE))
    assert again.trace.visited_nodes() == res.trace.visited_nodes()


def test_detection_score_raises_a_childs_priority():
    # flat heatmaps, one decoy legible in the bottom-right child: weighted by the detection it goes first
    decoy = {"x": [((1800.0, 1800.0, 1830.0, 1830.0), 0.4)]}
    res = run_search(FakeLocalizer({}, informative=False, decoys=decoy), blank_image(2048, 2048), "x",
                     RefConfig(**NO_CUE, detection_priority_weight=1.0))
    assert level1_order(res)[0] == pytest.approx([972.8, 972.8])
    res = run_search(FakeLocalizer({}, informative=False, decoys=decoy), blank_image(2048, 2048), "x",
                     RefConfig(**NO_CUE, detection_priority_weight=0.0))
    assert level1_order(res)[0] == [0.0, 0.0]


# ---- stop rule and anytime fallback -------------------------------------------------------------

@pytest.mark.parametrize("score, stops", [(0.5, False), (0.51, True)])
def test_stop_rule_is_strictly_above_high(score, stops):
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, score=score)
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(confidence_high=0.5, **NO_CUE))
    assert res.found and res.box_xyxy == CUP
    if stops:
        assert res.stop_reason == "confident" and not res.fallback and res.nodes_visited == 3
    else:  # 0.5 is not > 0.5: the whole tree is searched, the box comes back as the fallback
        assert res.stop_reason == "exhausted" and res.fallback and not res.confident and res.nodes_visited == 21


def test_fallback_returns_the_best_box_of_any_visited_node():
    # the cup (0.45) is legible only in a level-2 box; a decoy (0.35) is seen from the root on
    decoy = (100.0, 1900.0, 130.0, 1930.0)
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, score=0.45, decoys={"cup": [(decoy, 0.35)]})
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(**NO_CUE))
    assert res.found and res.fallback and res.stop_reason == "exhausted"
    assert res.box_xyxy == CUP and res.score == pytest.approx(0.45) and res.instances == [(CUP, 0.45)]
    assert res.to_json()["fallback"] is True


def test_below_confidence_low_is_not_found():
    decoy = (100.0, 1900.0, 130.0, 1930.0)
    loc = FakeLocalizer({}, decoys={"cup": [(decoy, 0.2)]})
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(confidence_low=0.3, **NO_CUE))
    assert not res.found and res.box_xyxy is None and res.instances == [] and not res.fallback
    assert res.score == pytest.approx(0.2)  # the best score seen is still reported
    assert res.nodes_visited == 21  # unsuccessful searches report their full length
    assert res.trace.graph.graph["found"] is False and res.trace.graph.graph["box_xyxy"] == []


# ---- contextual cue -----------------------------------------------------------------------------

def top_right_context():
    context = np.full((8, 8), -6.0, dtype=np.float32)
    context[0:4, 4:8] = 6.0  # "likely in the top right"
    return context


def test_context_cue_fires_on_a_weak_heatmap_and_guides():
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, informative=False, context=top_right_context())
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(context_cue=True))
    assert loc.calls[0][0] == "locate" and loc.calls[1][0] == "suggest"  # root located, then the cue
    assert res.trace.graph.nodes[0]["cue"] == "context"
    assert np.array_equal(res.trace.heatmaps[0], top_right_context())
    assert res.model_calls == loc.n_calls("suggest") + loc.n_calls("locate")
    assert res.found and res.nodes_visited == 3
    assert boxes_in_visit_order(res)[1] == pytest.approx(TOP_RIGHT_BOX)


def test_context_cue_off_or_strong_heatmap_never_asks():
    off = FakeLocalizer({"cup": [CUP]}, detect_side=600, informative=False, context=top_right_context())
    run_search(off, blank_image(2048, 2048), "cup", RefConfig(context_cue=False))
    strong = FakeLocalizer({"cup": [CUP]}, detect_side=600, hot=8.0, context=top_right_context())
    res = run_search(strong, blank_image(2048, 2048), "cup", RefConfig(context_cue=True))
    assert off.n_calls("suggest") == 0 and strong.n_calls("suggest") == 0
    assert res.trace.graph.nodes[0]["cue"] == "target" and res.trace.graph.nodes[0]["heatmap_max"] == 8.0


def test_context_answer_none_keeps_the_target_heatmap_but_costs_a_call():
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, hot=2.0, context=None)  # weak but informative
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(context_cue=True))
    assert res.found and res.nodes_visited == 3
    assert loc.n_calls("suggest") == 2  # root and the top-right child; the found leaf is not expanded
    assert res.model_calls == 2 + loc.n_calls("locate") == 2 + 3
    assert res.trace.graph.nodes[0]["cue"] == "target"


def test_cue_threshold_decays_with_level():
    # leaf_divisor 8 on 2048 px: leaf side 256, levels 0..3; thresholds 6.0, 4.2, 3.0 at levels 0, 1, 2
    # (the reference's max(3, 6 * 0.7**level) with the root at level 0).
    cfg = RefConfig(context_cue=True, leaf_divisor=8, max_nodes=1000)
    assert [cfg.cue_threshold(level) for level in range(4)] == pytest.approx([6.0, 4.2, 3.0, 3.0])
    # A heatmap of 5.0 everywhere is weak at the root only; 4.0 is weak at levels 0 and 1.
    for value, expected_levels in ((5.0, [0]), (4.0, [0] + [1] * 4)):
        loc = FakeLocalizer({}, scene_heatmaps={"x": np.full((2, 2), value)}, context=lambda t, r: None)
        res = run_search(loc, blank_image(2048, 2048), "x", cfg)
        asked = [c[2] for c in loc.calls if c[0] == "suggest"]
        by_box = {tuple(a["box_xyxy"]): a for _, a in res.trace.graph.nodes(data=True)}
        assert sorted(by_box[b]["level"] for b in asked) == expected_levels
        assert res.nodes_visited == 1 + 4 + 16 + 64


# ---- multi-instance -----------------------------------------------------------------------------

THREE = [(100.0, 100.0, 140.0, 140.0), (1500.0, 200.0, 1540.0, 240.0), (900.0, 1700.0, 940.0, 1740.0)]


def test_multi_instance_finds_all_three():
    loc = FakeLocalizer({"cup": THREE}, detect_side=600)
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(multi_instance=True, **NO_CUE))
    assert res.found and res.stop_reason == "exhausted"
    assert sorted(b for b, _ in res.instances) == sorted(THREE)
    assert res.box_xyxy in THREE


def test_multi_instance_nms_counts_an_object_seen_twice_once():
    on_border = (1010.0, 300.0, 1040.0, 330.0)  # on the x = 1024 tile border: whole in two level-2 boxes
    near_dup = ((1011.0, 301.0, 1041.0, 331.0), 0.95)  # IoU ~0.9 with it, scored higher
    loc = FakeLocalizer({"cup": [on_border, THREE[2]]}, detect_side=600, decoys={"cup": [near_dup]})
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(multi_instance=True, **NO_CUE))
    g = res.trace.graph
    seen_in = [n for n in g if g.nodes[n]["visit_order"] and g.nodes[n]["best_score"] > 0.5
               and g.nodes[n]["level"] == 2 and g.nodes[n]["box_xyxy"][0] <= 1010 and g.nodes[n]["box_xyxy"][2] >= 1040
               and g.nodes[n]["box_xyxy"][1] <= 300]
    assert len(seen_in) == 2  # really detected in two leaves
    assert len(res.instances) == 2
    assert res.instances[0] == near_dup  # the better of the duplicates is kept, best first
    assert {b for b, _ in res.instances} == {near_dup[0], THREE[2]}


def test_multi_instance_cap():
    loc = FakeLocalizer({"cup": THREE}, detect_side=600)
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(multi_instance=True, max_instances=2, **NO_CUE))
    assert res.stop_reason == "instances_cap" and len(res.instances) == 2 and res.nodes_visited < 21


def test_min_priority_prunes_expansion():
    cfg = RefConfig(multi_instance=True, min_priority=0.5, **NO_CUE)
    res = run_search(FakeLocalizer({}, informative=False), blank_image(2048, 2048), "x", cfg)
    assert res.nodes_visited == 5 and res.trace.graph.number_of_nodes() == 5  # only the root is expanded
    # evidence ~0.95 in the top-right quadrant, ~0.02-0.06 elsewhere: only that branch is expanded
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, scene_heatmaps=quadrant_scene(-4.0, 3.0, -4.0, -4.0, "cup"))
    res = run_search(loc, blank_image(2048, 2048), "cup", cfg)
    assert res.instances == [(CUP, 0.9)] and res.trace.graph.number_of_nodes() == 1 + 4 + 4
    assert res.nodes_visited == 9 and res.stop_reason == "exhausted"


# ---- step events and accounting -----------------------------------------------------------------

def test_on_step_reports_every_visit_as_it_happens():
    events: list[StepEvent] = []
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, informative=False, context=top_right_context())
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(), on_step=events.append)
    assert [e.visit_order for e in events] == list(range(1, res.nodes_visited + 1))
    assert [e.node_id for e in events] == res.trace.visited_nodes()
    g = res.trace.graph
    for e in events:
        a = g.nodes[e.node_id]
        assert list(e.box_xyxy) == a["box_xyxy"] and e.level == a["level"] and e.cue == a["cue"]
        assert e.priority == a["priority"] and e.best_score == a["best_score"] and e.heatmap_max == a["heatmap_max"]
    assert events[0].cue == "context" and events[0].queue_size == 4 and events[0].level == 0
    assert events[-1].best_box_xyxy == CUP and events[-1].best_score == pytest.approx(0.9)


def test_honest_accounting():
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, hot=2.0, delay_s=0.002)
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(context_cue=True))
    g = res.trace.graph
    assert res.model_calls == loc.n_calls("locate") + loc.n_calls("suggest")
    assert res.model_calls == sum(a["model_calls"] for _, a in g.nodes(data=True))
    assert res.nodes_scored == len(loc.located_regions()) == g.number_of_nodes()
    assert res.nodes_visited == len(res.trace.visited_nodes()) == g.graph["nodes_visited"]
    assert 0 < res.localizer_seconds <= res.seconds
    assert res.engine_seconds == pytest.approx(res.seconds - res.localizer_seconds)
    assert res.localizer_seconds >= 0.002 * res.model_calls
    assert sum(a["seconds"] for _, a in g.nodes(data=True)) <= res.seconds
    assert loc.set_image_calls == 1


def test_a_broken_localizer_is_an_error():
    class Short(FakeLocalizer):
        def locate(self, target, regions):
            return super().locate(target, regions)[:1]

    with pytest.raises(RuntimeError, match="returned 1 detections for 4 regions"):
        run_search(Short({}), blank_image(2048, 2048), "x", RefConfig(**NO_CUE))

    class NaN(FakeLocalizer):
        def locate(self, target, regions):
            return [Detection(np.zeros((0, 4)), np.zeros(0), np.full((4, 4), np.nan)) for _ in regions]

    with pytest.raises(RuntimeError, match="finite"):
        run_search(NaN({}), blank_image(2048, 2048), "x", RefConfig(**NO_CUE))


# ---- V* against the blind baselines ---------------------------------------------------------------

def test_vstar_needs_clearly_fewer_nodes_than_the_blind_strategies():
    rng = np.random.default_rng(0)
    boxes = [(x, y, x + 30, y + 30) for x, y in rng.uniform(0, 2010, (30, 2))]
    means = {}
    for strategy in ("vstar", "bfs", "dfs", "random-bfs", "random-dfs"):
        counts = []
        for box in boxes:
            r = run_search(FakeLocalizer({"t": [box]}, detect_side=600), blank_image(2048, 2048), "t",
                           RefConfig(strategy=strategy, **NO_CUE), seed=1)
            assert r.found and r.confident and iou(r.box_xyxy, box) == 1.0
            counts.append(r.nodes_visited)
        means[strategy] = float(np.mean(counts))
    assert means["vstar"] <= 3.5  # root, quadrant, leaf (a little more for boxes on tile borders)
    assert all(means["vstar"] < 0.5 * means[s] for s in ("bfs", "dfs", "random-bfs", "random-dfs")), means


def iou(a, b):
    from seal.core.geometry import iou_xyxy

    return iou_xyxy(a, b)


class CoarseFooled(FakeLocalizer):
    """A localizer that, in any region wider than 400 px, mistakes a near miss (``DECOY``) for the
    target at 0.8; up close it sees that it is not."""

    DECOY = (300.0, 1500.0, 340.0, 1540.0)

    def _detections(self, target, region):
        boxes, scores = super()._detections(target, region)
        if min(region[2] - region[0], region[3] - region[1]) > 400 and _contains(region, self.DECOY):
            boxes, scores = [*boxes, self.DECOY], [*scores, 0.8]
        return boxes, scores


def _contains(region, box):
    return region[0] <= box[0] and region[1] <= box[1] and box[2] <= region[2] and box[3] <= region[3]


def test_a_coarse_hit_is_confirmed_up_close_before_it_stops_the_search():
    image = blank_image(2048, 2048)
    trusting = run_search(CoarseFooled({"cup": [CUP]}, detect_side=600), image, "cup",
                          SearchConfig(**NO_CUE), check_cfg=HitCheckConfig(zoom=0.0))
    assert trusting.stop_reason == "confident" and trusting.box_xyxy == CoarseFooled.DECOY  # fooled at level 1

    loc = CoarseFooled({"cup": [CUP]}, detect_side=600)
    res = run_search(loc, image, "cup", SearchConfig(**NO_CUE), check_cfg=HitCheckConfig(zoom=1.25))
    assert res.stop_reason == "confident" and res.box_xyxy == CUP and not res.fallback
    g = res.trace.graph
    confirmed = {n: a for n, a in g.nodes(data=True) if a["zoom_score"] >= 0}
    assert len(confirmed) >= 2  # the decoy's node (refuted) and the cup's (confirmed)
    refuted = [a for a in confirmed.values() if a["zoom_score"] < 0.5]
    assert refuted and all(a["best_score"] == a["zoom_score"] for a in confirmed.values())
    # each confirmation is one square locate of 1.25 leaf sides (leaf 256 px) around the hit
    windows = [r for r in loc.located_regions()
               if abs((r[2] - r[0]) - 320.0) < 1e-6 and abs((r[3] - r[1]) - 320.0) < 1e-6]
    assert len(windows) == len(confirmed)
    assert res.model_calls == loc.n_calls("locate") + loc.n_calls("suggest")
    with pytest.raises(ConfigError, match="hit_check.zoom"):
        HitCheckConfig(zoom=9.0)
