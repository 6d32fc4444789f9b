"""Budgets (search/budget.py and their use in the engine): each stops with its own stop_reason,
never raises, and returns the best answer so far."""

import functools
import pytest

from search.budget import Budget
from search.config import SearchConfig
from search.engine import run_search
from tests.fakes import FakeLocalizer, blank_image

# These tests pin the reference tree (leaves at min(W, H) / 4); the project default is 8.
RefConfig = functools.partial(SearchConfig, leaf_divisor=4)

CUP = (1300.0, 300.0, 1340.0, 340.0)
DECOY = (100.0, 1900.0, 130.0, 1930.0)  # scores 0.35: seen from the root on, the fallback answer


def illegible(**kw):
    """The cup is never legible (the search would visit the whole tree) but the decoy is."""
    return FakeLocalizer({"cup": [CUP]}, detect_side=1, decoys={"cup": [(DECOY, 0.35)]}, **kw)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_budget_unit():
    clock = Clock()
    b = Budget(RefConfig(max_nodes=2, max_model_calls=3, deadline_s=1.5), clock)
    assert b.stop_reason() is None and b.call_blocker(3) is None and b.call_blocker(4) == "max_model_calls"
    b.nodes_visited = 2
    assert b.stop_reason() == "max_nodes"
    b.nodes_visited, b.model_calls = 0, 3
    assert b.stop_reason() is None and b.call_blocker() == "max_model_calls"  # calls do not stop visits
    b.model_calls = 0
    clock.t += 1.5
    assert b.stop_reason() == "deadline" and b.call_blocker() == "deadline" and b.elapsed() == 1.5
    assert Budget(RefConfig(deadline_s=0.0), clock).out_of_time() is False  # 0 = no deadline

    def work():
        clock.t += 0.25
        return "ok"

    assert b.timed(work) == "ok" and b.localizer_seconds == 0.25


@pytest.mark.parametrize("max_nodes", [1, 2, 7])
def test_max_nodes(max_nodes):
    res = run_search(illegible(), blank_image(2048, 2048), "cup", RefConfig(max_nodes=max_nodes, context_cue=False))
    assert res.stop_reason == "max_nodes" and res.nodes_visited == max_nodes
    assert res.found and res.fallback and res.box_xyxy == DECOY  # the best answer so far


def test_max_nodes_equal_to_the_tree_is_exhausted():
    res = run_search(illegible(), blank_image(2048, 2048), "cup", RefConfig(max_nodes=21, context_cue=False))
    assert res.stop_reason == "exhausted" and res.nodes_visited == 21


@pytest.mark.parametrize("max_calls", [1, 2, 3])
def test_max_model_calls(max_calls):
    loc = illegible()
    res = run_search(loc, blank_image(2048, 2048), "cup",
                     RefConfig(max_model_calls=max_calls, context_cue=False, max_nodes=1000))
    assert res.stop_reason == "max_model_calls" and res.model_calls == max_calls == loc.n_calls("locate")
    # located nodes cost no further call: all of them are still visited
    assert res.nodes_visited == res.nodes_scored == 1 + 4 * (max_calls - 1)
    assert res.found and res.fallback and res.box_xyxy == DECOY


def test_call_budget_keeps_a_call_for_the_children():
    # the context cue would be asked at every inner node; with 2 calls left it is asked (suggest +
    # locate), with only 1 left the children are located without it
    loc = illegible(informative=False, context=None)
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(max_model_calls=4, max_nodes=1000))
    assert [c[0] for c in loc.calls] == ["locate", "suggest", "locate", "locate"]
    assert res.model_calls == 4 and res.stop_reason == "max_model_calls"


def test_deadline():
    loc = illegible(delay_s=0.03)
    res = run_search(loc, blank_image(2048, 2048), "cup", RefConfig(deadline_s=0.05, max_nodes=1000))
    assert res.stop_reason == "deadline"
    assert res.model_calls <= 3 and res.seconds < 0.05 + 2 * 0.03 + 0.5  # stopped before the next call
    assert 0 < res.localizer_seconds <= res.seconds
    assert res.found and res.fallback and res.box_xyxy == DECOY


def test_budget_stop_without_any_box_is_not_found():
    res = run_search(FakeLocalizer({"cup": [CUP]}, detect_side=1), blank_image(2048, 2048), "cup",
                     RefConfig(max_nodes=2))
    assert res.stop_reason == "max_nodes" and not res.found and res.box_xyxy is None and res.nodes_visited == 2


def test_a_confident_hit_beats_the_budget_check():
    # the cup is found at the 3rd visit; a budget of exactly 3 nodes still reports "confident"
    res = run_search(FakeLocalizer({"cup": [CUP]}, detect_side=600), blank_image(2048, 2048), "cup",
                     RefConfig(max_nodes=3, context_cue=False))
    assert res.stop_reason == "confident" and res.nodes_visited == 3
