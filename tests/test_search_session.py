"""SearchSession (search/session.py): one image, several targets, one set_image; result JSON."""

import json

from search.config import SearchConfig
from search.hit_check.config import HitCheckConfig
from search.engine import run_search
from search.session import SearchSession
from tests.fakes import FakeLocalizer, blank_image

CUP = (1300.0, 300.0, 1340.0, 340.0)
PEN = (1400.0, 400.0, 1430.0, 430.0)  # same leaf as the cup: the second search re-visits known regions

API_RESULT_KEYS = {"target", "strategy", "found", "box_xyxy", "score", "instances", "nodes_visited", "nodes_scored",
                   "model_calls", "seconds", "localizer_seconds", "stop_reason"}


def test_session_sets_the_image_once_and_shares_the_cache():
    loc = FakeLocalizer({"cup": [CUP], "pen": [PEN]}, detect_side=600)
    # no leaf-scale confirmation: its window depends on the target's box, so it is not shared
    session = SearchSession(loc, blank_image(2048, 2048), SearchConfig(context_cue=False), None,
                            HitCheckConfig(zoom=0.0))
    cup, pen = session.search_many(["cup", "pen"])
    assert loc.set_image_calls == 1
    assert cup.found and pen.found and cup.box_xyxy == CUP and pen.box_xyxy == PEN
    stats = session.stats()
    # the pen's search located the very same 9 regions as the cup's: all cache hits
    assert stats.patches_encoded == cup.nodes_scored and stats.encode_cache_hits == pen.nodes_scored
    summary = session.summary()
    assert summary["targets"] == 2 and summary["found"] == 2
    assert summary["nodes_visited"] == cup.nodes_visited + pen.nodes_visited
    assert summary["model_calls"] == cup.model_calls + pen.model_calls
    assert summary["encode_cache_hits"] == stats.encode_cache_hits and summary["set_image_seconds"] >= 0


def test_search_many_returns_one_result_per_target_in_order():
    loc = FakeLocalizer({"cup": [CUP], "pen": [PEN]}, detect_side=600)
    session = SearchSession(loc, blank_image(2048, 2048), SearchConfig(context_cue=False))
    results = session.search_many(["cup", "pen", "Cup "])
    assert [r.target for r in results] == ["cup", "pen", "Cup "]
    assert results[2].box_xyxy == results[0].box_xyxy
    assert loc.n_calls("locate") == results[0].model_calls + results[1].model_calls  # "Cup " searched once
    assert len(session.results) == 2


def test_per_search_config_override_and_on_step():
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600)
    session = SearchSession(loc, blank_image(2048, 2048), SearchConfig(context_cue=False))
    steps = []
    bfs = session.search("cup", on_step=steps.append, cfg=SearchConfig(strategy="bfs", context_cue=False))
    assert bfs.strategy == "bfs" and len(steps) == bfs.nodes_visited
    assert session.search("cup").strategy == "vstar"


def test_run_search_set_image_flag():
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600)
    image = blank_image(2048, 2048)
    run_search(loc, image, "cup", SearchConfig())
    assert loc.set_image_calls == 1 and loc.image is image
    run_search(loc, image, "cup", SearchConfig(), set_image=False)
    assert loc.set_image_calls == 1


def test_result_json():
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600)
    res = run_search(loc, blank_image(2048, 2048), "cup", SearchConfig(context_cue=False))
    j = json.loads(json.dumps(res.to_json()))
    assert API_RESULT_KEYS <= set(j) and set(j) - API_RESULT_KEYS == {"fallback", "hit_check_score", "hit_check_calls",
                                                                    "hit_check_seconds", "hit_check_forwards",
                                                                    "forwards", "answer_level",
                                                                    "confidence"}
    assert j["box_xyxy"] == list(CUP) and j["found"] is True and j["fallback"] is False
    # root, children, grandchildren, and the leaf-scale confirmation of the level-2 hit
    assert j["nodes_visited"] == 3 and j["model_calls"] == 4 and j["stop_reason"] == "confident"
    assert j["instances"] == [{"box_xyxy": list(CUP), "score": 0.9}]
    assert j["hit_check_score"] is None and j["hit_check_calls"] == 0
    missing = run_search(FakeLocalizer({}), blank_image(600, 600), "cup", SearchConfig()).to_json()
    assert missing["found"] is False and missing["box_xyxy"] is None and missing["instances"] == []
