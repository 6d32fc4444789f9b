"""Golden outputs of the shipped tiny models: a refactor that changes what they do is seen here.

The goldens (``tests/golden/shipped.json``) were written by ``python -m tests.golden_shipped --update``
from the checked-in ``checkpoints/``. Actions, answers, targets and found flags must match exactly;
boxes within 3 px, scores within 0.03, vision tokens within 5% (CPU float differences can flip a
near-tied patch priority, so node counts get a little slack too).
"""

import json

import pytest

from tests.golden_shipped import CHECKPOINTS, GOLDEN, make_bench, observe


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    for name, path in CHECKPOINTS.items():
        assert path.is_dir(), f"the shipped {name} model is missing: {path}"
    return observe(make_bench(tmp_path_factory.mktemp("golden") / "bench"))


@pytest.fixture(scope="module")
def golden():
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_same_samples(observed, golden):
    assert [s["id"] for s in observed["samples"]] == [s["id"] for s in golden["samples"]]
    assert observed["bench"] == golden["bench"]


@pytest.mark.parametrize("mode", ["policy", "full"])
def test_agent_decisions_and_answers(observed, golden, mode):
    for got, want in zip(observed["samples"], golden["samples"]):
        g, w = got[mode], want[mode]
        assert (g["action"], g["escalated"], g["answer_index"], g["targets"], g["found"]) == \
               (w["action"], w["escalated"], w["answer_index"], w["targets"], w["found"]), got["id"]
        assert g["vision_tokens"] == pytest.approx(w["vision_tokens"], rel=0.05, abs=1), got["id"]
        for action, p in w["probs"].items():
            assert g["probs"][action] == pytest.approx(p, abs=0.03), (got["id"], action)


def test_the_ledger_books_the_hit_checks(observed):
    checked = [s["full"] for s in observed["samples"] if s["full"]["hit_checks"]]
    assert checked, "no forced-FULL run checked a hit"
    for rec in (s["full"] for s in observed["samples"]):
        # the shipped check is the search model's crop matcher (hit_check.vqa: auto): every box it
        # judged is booked, and it runs no VQA prompt, so no vision token of the LLM
        assert rec["ledger_hit_checks"] == rec["hit_checks"]
        assert rec["verify_tokens"] == 0 and rec["llm_calls"] >= 1


@pytest.mark.parametrize("key", ["search", "checked_search"])
def test_search_boxes(observed, golden, key):
    """The search model alone, and checked by the shipped checker (the default plan)."""
    for got, want in zip(observed["samples"], golden["samples"]):
        for g, w in zip(got[key], want[key], strict=True):
            assert (g["target"], g["found"]) == (w["target"], w["found"]), got["id"]
            assert g["score"] == pytest.approx(w["score"], abs=0.03), (got["id"], g["target"])
            assert abs(g["nodes_visited"] - w["nodes_visited"]) <= 2, (got["id"], g["target"])
            if w["box_xyxy"] is not None:
                assert g["box_xyxy"] == pytest.approx(w["box_xyxy"], abs=3.0), (got["id"], g["target"])
            if w.get("hit_check_score") is not None:
                assert g["hit_check_score"] == pytest.approx(w["hit_check_score"], abs=0.03), (got["id"], g["target"])
