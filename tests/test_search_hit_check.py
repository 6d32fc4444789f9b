"""The search with a hit check: rejected near misses do not stop it, are not returned and are not
asked about twice; an abstaining check or a spent budget changes nothing. Most tests pin the
reference's gate (:data:`GATE`: the first accepted hit stops the search); the default ranks."""

import math
from dataclasses import replace

import pytest

from search.config import SearchConfig
from search.engine import run_search
from search.session import SearchSession
from search.hit_check.config import HitCheckConfig
from search.hit_check.rules import HitCheckState
from search.hit_check.protocol import HitCheck
from seal.core.errors import ConfigError
from tests.fakes import FakeLocalizer, FakeHitCheck, blank_image

CUP = (1300.0, 300.0, 1340.0, 340.0)
NEAR = (200.0, 1500.0, 240.0, 1540.0)  # a near miss the localizer likes better than the cup, at any zoom
GATE = SearchConfig(select="first", compare_rejected=False)
GATE_CHECK = HitCheckConfig(floor=0.0, max_calls=8)
"""The gate of ``configs/ablations/hit_check_gate.yaml``: a rejected box never stops the search nor is returned."""


def _search(hit_check=None, cfg=None, decoy_score=0.95, targets=None, check=None):
    loc = FakeLocalizer({"cup": [CUP]} if targets is None else targets, detect_side=600,
                        decoys={"cup": [(NEAR, decoy_score)]})
    check = check or (GATE_CHECK if cfg is None or not cfg.compare_rejected else HitCheckConfig())
    return run_search(loc, blank_image(2048, 2048), "cup", cfg or GATE, hit_check=hit_check, check_cfg=check)


def test_without_a_hit_check_the_near_miss_wins():
    res = _search()
    assert res.found and res.box_xyxy == NEAR and res.stop_reason == "confident"
    assert res.hit_check_calls == 0 and res.hit_check_score is None


def test_a_rejected_near_miss_does_not_stop_the_search():
    ver = FakeHitCheck({"cup": [CUP]})
    res = _search(ver)
    assert isinstance(ver, HitCheck)
    assert res.found and res.box_xyxy == CUP and res.stop_reason == "confident" and not res.fallback
    assert res.hit_check_score == pytest.approx(0.9)
    # the near miss is seen by several nodes but judged once; the cup once
    assert [b for _, b in ver.asked] == [NEAR, CUP] and res.hit_check_calls == 2
    g = res.trace.graph
    assert g.graph["hit_check_calls"] == 2 and g.graph["hit_check_score"] == pytest.approx(0.9)
    checked = sorted(a["hit_check_score"] for a in g.nodes.values() if a["hit_check_score"] >= 0)
    assert checked == pytest.approx([0.05, 0.9])
    assert res.to_json()["hit_check_calls"] == 2


def test_an_abstaining_check_or_no_budget_changes_nothing():
    plain = _search()
    for ver, cfg, check in ((FakeHitCheck({}, abstain=True), GATE, None),
                            (FakeHitCheck({}, abstain=True), SearchConfig(), None),
                     (FakeHitCheck({"cup": [CUP]}), GATE, replace(GATE_CHECK, max_calls=0)),
                     (FakeHitCheck({"cup": [CUP]}), SearchConfig(), HitCheckConfig(max_calls=0))):
        res = _search(ver, cfg, check=check)
        assert (res.box_xyxy, res.nodes_visited, res.model_calls) == (plain.box_xyxy, plain.nodes_visited,
                                                                      plain.model_calls)
        assert res.hit_check_score is None
    assert res.hit_check_calls == 0 and not ver.asked  # the budget of 0 never calls


def test_fallback_skips_rejected_boxes():
    # no cup in the image, the near miss between confidence_low and confidence_high: the anytime fallback
    plain = _search(decoy_score=0.4, targets={})
    assert plain.found and plain.fallback and plain.box_xyxy == NEAR
    rejected = _search(FakeHitCheck({"cup": [CUP]}), decoy_score=0.4, targets={})
    assert not rejected.found and rejected.box_xyxy is None and rejected.hit_check_calls == 1
    accepted = _search(FakeHitCheck({"cup": [NEAR]}), decoy_score=0.4, targets={})
    assert accepted.found and accepted.fallback and accepted.box_xyxy == NEAR
    assert accepted.hit_check_score == pytest.approx(0.9)


def test_second_confident_box_of_a_node_is_checked():
    cfg = GATE
    ver = FakeHitCheck({"cup": [CUP]})
    checks = HitCheckState(ver, "cup", cfg, GATE_CHECK)
    (hit,), seen = checks.confident_hits([NEAR, CUP], [0.95, 0.8])
    assert hit.box_xyxy == CUP and hit.score == 0.8 and seen == pytest.approx(0.9)
    once = HitCheckState(FakeHitCheck({"cup": [CUP]}), "cup", GATE, replace(GATE_CHECK, per_node=1))
    assert once.confident_hits([NEAR, CUP], [0.95, 0.8])[0] == []
    # below confidence_high is not a hit to check
    assert HitCheckState(ver, "cup", cfg, GATE_CHECK).confident_hits([CUP], [0.5]) == ([], -1.0)


@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan, "yes"])
def test_bad_hit_check_answers_raise(bad):
    with pytest.raises(RuntimeError, match="fake_check"):
        _search(FakeHitCheck({}, value=bad))


def test_session_sets_the_checks_image_once():
    loc, ver = FakeLocalizer({"cup": [CUP]}, detect_side=600), FakeHitCheck({"cup": [CUP]})
    session = SearchSession(loc, blank_image(2048, 2048), SearchConfig(), ver)
    session.search_many(["cup", "cup", "plate"])
    assert ver.set_image_calls == 1 and session.summary()["hit_check_calls"] >= 1


@pytest.mark.parametrize("field,value", [("threshold", 1.5), ("max_calls", -1), ("per_node", 0),
                                         ("fallback_top", -1)])
def test_config_rejects_impossible_values(field, value):
    with pytest.raises(ConfigError, match=field):
        HitCheckConfig(**{field: value})


def test_floor_keeps_the_most_probable_rejected_box():
    # no cup: the near miss is rejected (p 0.3 < 0.5); off by default, it is the fallback above the floor
    off = _search(FakeHitCheck({"cup": [CUP]}, p_false=0.3), decoy_score=0.4, targets={})
    assert not off.found and off.box_xyxy is None
    kept = _search(FakeHitCheck({"cup": [CUP]}, p_false=0.3), GATE, decoy_score=0.4, targets={},
                   check=replace(GATE_CHECK, floor=0.2))
    assert kept.found and kept.fallback and kept.box_xyxy == NEAR and kept.hit_check_score == pytest.approx(0.3)
    below = _search(FakeHitCheck({"cup": [CUP]}, p_false=0.1), GATE, decoy_score=0.4, targets={},
                    check=replace(GATE_CHECK, floor=0.2))
    assert not below.found
    # an accepted box always wins over a rejected one
    both = _search(FakeHitCheck({"cup": [CUP]}, p_false=0.3), GATE, check=replace(GATE_CHECK, floor=0.2))
    assert both.box_xyxy == CUP and not both.fallback


def test_floor_above_the_threshold_is_refused():
    with pytest.raises(ConfigError, match="hit_check.floor"):
        HitCheckConfig(threshold=0.5, floor=0.6)


def test_select_best_compares_the_accepted_hits():
    # a hit check that only half reads the near miss accepts it too, less sure than the cup
    half = {"p_true": 0.95, "p_false": 0.6}
    first = _search(FakeHitCheck({"cup": [CUP]}, **half))
    assert first.box_xyxy == NEAR and first.hit_check_score == pytest.approx(0.6)
    best = _search(FakeHitCheck({"cup": [CUP]}, **half), replace(GATE, select="best", compare_nodes=20))
    assert best.found and not best.fallback and best.box_xyxy == CUP and best.hit_check_score == pytest.approx(0.95)
    assert first.nodes_visited < best.nodes_visited <= first.nodes_visited + 20
    # the near miss is asked about once, although several nodes see it
    none_more = _search(FakeHitCheck({"cup": [CUP]}, **half), replace(GATE, select="best", compare_nodes=0))
    assert (none_more.box_xyxy, none_more.nodes_visited) == (first.box_xyxy, first.nodes_visited)
    assert none_more.model_calls == first.model_calls  # the closing node is not expanded


def test_select_best_asks_about_an_accepted_object_once():
    ver = FakeHitCheck({"cup": [CUP]}, p_true=0.95, p_false=0.6)
    _search(ver, SearchConfig(select="best", compare_nodes=40))
    asked = [b for _, b in ver.asked]
    from seal.core.geometry import iou_xyxy
    for i, a in enumerate(asked):
        assert all(float(iou_xyxy(a, [b]).max()) <= 0.5 for b in asked[:i]), asked


def test_select_best_without_a_check_keeps_the_best_score():
    res = _search(cfg=replace(GATE, select="best", compare_nodes=20))
    assert res.found and res.box_xyxy == NEAR and res.hit_check_score is None


@pytest.mark.parametrize("field", [{"select": "all"}, {"compare_nodes": -1}])
def test_select_config_is_checked(field):
    with pytest.raises(ConfigError):
        SearchConfig(**field)


def test_shipped_best_of_config_turns_it_on():
    from seal.core.paths import PROJECT_ROOT
    from seal.config import load

    cfg = load([PROJECT_ROOT / "configs" / "ablations" / "search_best.yaml"]).search
    assert (cfg.select, cfg.compare_nodes) == ("best", 6) and SearchConfig().select == "auto"


def test_compare_rejected_lets_the_check_rank_instead_of_gate():
    # the check rejects the cup (0.45) but the near miss only just passes (0.5) and the localizer
    # scores it lower (0.6): gating answers the near miss, ranking the cup (0.45 x 0.9 > 0.5 x 0.6)
    reader = {"p_true": 0.45, "p_false": 0.5}
    gated = _search(FakeHitCheck({"cup": [CUP]}, **reader), replace(GATE, select="best", compare_nodes=40),
                    decoy_score=0.6)
    assert gated.box_xyxy == NEAR
    ranked = _search(FakeHitCheck({"cup": [CUP]}, **reader),
                     SearchConfig(select="best", compare_nodes=40, compare_rejected=True),
                     decoy_score=0.6, check=HitCheckConfig(floor=0.1))
    assert ranked.box_xyxy == CUP and not ranked.fallback and ranked.hit_check_score == pytest.approx(0.45)
    floored = _search(FakeHitCheck({"cup": [CUP]}, **reader),
                      SearchConfig(select="best", compare_nodes=40, compare_rejected=True),
                      decoy_score=0.6, check=HitCheckConfig(floor=0.46))
    assert floored.box_xyxy == NEAR  # below the floor a rejected box is no candidate


def test_compare_rejected_opens_the_comparison_on_a_rejected_hit():
    checks = HitCheckState(FakeHitCheck({"cup": [CUP]}, p_false=0.3),
                          "cup", SearchConfig(select="best", compare_rejected=True), HitCheckConfig(floor=0.2))
    hits, seen = checks.confident_hits([NEAR], [0.95])
    assert [h.box_xyxy for h in hits] == [NEAR] and seen == pytest.approx(0.3)
    assert checks.accepted == [] and [v.box_xyxy for v in checks.candidates()] == [NEAR]
    assert checks.confident_hits([NEAR], [0.95]) == ([], -1.0)  # the same object is not asked again


def test_compare_rejected_needs_select_best():
    with pytest.raises(ConfigError, match="compare_rejected"):
        SearchConfig(select="first", compare_rejected=True)


def test_the_default_ranks_checked_hits_and_gates_nothing_unchecked():
    """``select: auto``: with a hit check the search compares (the cup, rejected at 0.45, outranks
    the near miss, accepted at 0.5, that the localizer scores lower); without one, or when the
    hit check cannot judge the name, the first confident hit stops it as in the reference."""
    reader = {"p_true": 0.45, "p_false": 0.5}
    ranked = _search(FakeHitCheck({"cup": [CUP]}, **reader), SearchConfig(), decoy_score=0.6)
    gated = _search(FakeHitCheck({"cup": [CUP]}, **reader), GATE, decoy_score=0.6)
    assert ranked.box_xyxy == CUP and gated.box_xyxy == NEAR
    assert ranked.nodes_visited > gated.nodes_visited
    plain, unchecked = _search(cfg=GATE), _search(cfg=SearchConfig())
    assert (unchecked.box_xyxy, unchecked.nodes_visited) == (plain.box_xyxy, plain.nodes_visited)


def test_rank_config_lets_the_check_rank():
    from seal.core.paths import PROJECT_ROOT
    from seal.config import load

    cfg = load([PROJECT_ROOT / "configs" / "ablations" / "hit_check_rank.yaml"])
    assert (cfg.search.select, cfg.search.compare_rejected, cfg.search.compare_nodes) == ("best", True, 30)
    assert cfg.hit_check.floor > 0
