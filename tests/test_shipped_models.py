"""Golden outputs of the shipped tiny models: a refactor that changes what they do is seen here.

The goldens (``tests/golden/shipped.json``) were written by ``python -m tests.golden_shipped --update``
from the checked-in ``checkpoints/``. Actions, answers, targets and found flags must match exactly;
boxes within 3 px, scores within 0.03, vision tokens within 5% (CPU float differences can flip a
near-tied patch priority, so node counts get a little slack too). Beside the outputs the goldens
hold the truth (the correct option, each target's true box), which must be the benchmark
regenerated now, and what it makes of the outputs (answer right, IoU with the true box).
"""

import json

import pytest

from tests.golden_shipped import CHECKPOINTS, GOLDEN, RUNS, SEARCHES, accuracy_change, iou, make_bench, observe

IOU_SLACK = 0.15
"""IoU tolerance: a 3 px shift of a 40 px box moves its IoU with the true box by up to ~0.15."""


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


def test_the_recorded_truth_is_the_benchmark_now(observed, golden):
    """The correct options and true boxes the goldens were scored against are what the generator
    makes today: a generator change shows here, not as a silent change of what "right" means."""
    for got, want in zip(observed["samples"], golden["samples"], strict=True):
        assert got["truth"] == want["truth"], got["id"]
        assert [t["target"] for t in want["truth"]["targets"]] == [r["target"] for r in want["search"]], got["id"]


def test_the_golden_scores_follow_from_its_truth(golden):
    """Each recorded ``correct`` / ``iou`` is what the recorded answer / box makes of the recorded truth."""
    for s in golden["samples"]:
        truth = s["truth"]
        for mode in RUNS:
            assert s[mode]["correct"] is (s[mode]["answer_index"] == truth["answer_index"]), (s["id"], mode)
            ious, found = s[mode]["iou"], s[mode]["found"]
            assert len(ious) == len(found) and all((v is None) is (not f) for v, f in zip(ious, found)), (s["id"], mode)
        for key in SEARCHES:
            for r, t in zip(s[key], truth["targets"], strict=True):
                assert r["true_box_xyxy"] == t["box_xyxy"], (s["id"], key)
                assert r["iou"] == iou(r["box_xyxy"], t["box_xyxy"]), (s["id"], key)


@pytest.mark.parametrize("mode", RUNS)
def test_agent_decisions_and_answers(observed, golden, mode):
    for got, want in zip(observed["samples"], golden["samples"]):
        g, w = got[mode], want[mode]
        assert (g["action"], g["escalated"], g["answer_index"], g["targets"], g["found"], g["correct"]) == \
               (w["action"], w["escalated"], w["answer_index"], w["targets"], w["found"], w["correct"]), got["id"]
        assert g["vision_tokens"] == pytest.approx(w["vision_tokens"], rel=0.05, abs=1), got["id"]
        for action, p in w["probs"].items():
            assert g["probs"][action] == pytest.approx(p, abs=0.03), (got["id"], action)
        for gi, wi in zip(g["iou"], w["iou"], strict=True):
            assert (gi is None) == (wi is None) and (wi is None or gi == pytest.approx(wi, abs=IOU_SLACK)), got["id"]


def test_the_ledger_books_the_hit_checks(observed):
    checked = [s["full"] for s in observed["samples"] if s["full"]["hit_checks"]]
    assert checked, "no forced-FULL run checked a hit"
    for rec in (s["full"] for s in observed["samples"]):
        # the shipped check is the search model's crop matcher (hit_check.vqa: auto): every box it
        # judged is booked, and it runs no VQA prompt, so no vision token of the LLM
        assert rec["ledger_hit_checks"] == rec["hit_checks"]
        assert rec["verify_tokens"] == 0 and rec["llm_calls"] >= 1


@pytest.mark.parametrize("key", SEARCHES)
def test_search_boxes(observed, golden, key):
    """The search model alone, and checked by the shipped checker (the default plan)."""
    for got, want in zip(observed["samples"], golden["samples"]):
        for g, w in zip(got[key], want[key], strict=True):
            assert (g["target"], g["found"], g["true_box_xyxy"]) == (w["target"], w["found"], w["true_box_xyxy"]), \
                got["id"]
            assert g["score"] == pytest.approx(w["score"], abs=0.03), (got["id"], g["target"])
            assert abs(g["nodes_visited"] - w["nodes_visited"]) <= 2, (got["id"], g["target"])
            if w["box_xyxy"] is not None:
                assert g["box_xyxy"] == pytest.approx(w["box_xyxy"], abs=3.0), (got["id"], g["target"])
                assert g["iou"] == pytest.approx(w["iou"], abs=IOU_SLACK), (got["id"], g["target"])
            if w["hit_check_score"] is not None:
                assert g["hit_check_score"] == pytest.approx(w["hit_check_score"], abs=0.03), (got["id"], g["target"])
            else:
                assert g["hit_check_score"] is None, (got["id"], g["target"])


def test_update_prints_the_accuracy_change(golden):
    """What ``--update`` prints before rewriting: answers right and targets found (IoU >= 0.5) per
    run and search, previous golden -> now; here a previous golden whose first policy answer was
    wrong and whose first checked search missed the true box."""
    before = json.loads(json.dumps(golden))
    first = before["samples"][0]
    first["policy"]["answer_index"] = 1 + first["truth"]["answer_index"]
    first["policy"]["iou"] = [0.0 for _ in first["policy"]["iou"]]
    first["checked_search"][0]["box_xyxy"] = [0.0, 0.0, 1.0, 1.0]
    lines = accuracy_change(before, golden).splitlines()
    assert lines[0] == "accuracy of the shipped models, previous golden -> now:"
    assert lines[1].split() == "policy answers right 2/3 -> 3/3; targets found with IoU >= 0.5 1/2 -> 2/2".split()
    assert lines[2].split() == "full answers right 3/3 -> 3/3; targets found with IoU >= 0.5 3/3 -> 3/3".split()
    assert lines[4].split() == "checked_search targets found with IoU >= 0.5 1/3 -> 2/3".split()
    for s in before["samples"]:  # a golden older than the truth fields: scored against the benchmark now
        del s["truth"]
        for mode in RUNS:
            del s[mode]["iou"]
    older = accuracy_change(before, golden).splitlines()
    assert "recorded no truth" in older[0] and older[1].split()[-3:] == ["?", "->", "2/2"]
