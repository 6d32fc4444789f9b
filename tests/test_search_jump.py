"""The search's shortcuts: the root's expansion jumping levels (``search.jump_levels``) and the hit
check reading the root's boxes whatever their scores (``search.root_check``), with forwards counted
per model pass."""

import pytest

from search.config import SearchConfig
from search.engine import run_search
from search.hit_check.protocol import AllChecks, check_many
from search.tree import descend, is_leaf, leaf_side
from seal.core.errors import ConfigError
from tests.fakes import FakeHitCheck, FakeLocalizer, blank_image

CUP = (1300.0, 300.0, 1340.0, 340.0)  # small: legible only on level-2 tiles (512 px) with detect_side 600
BIG = (200.0, 900.0, 900.0, 1600.0)  # large: seen at the root with a low score (a decoy of the fake)


class BatchedCheck(FakeHitCheck):
    """A fake check with a batched ``check_many`` (one pass of its model for all boxes)."""

    def check_many(self, target, boxes):
        out = [FakeHitCheck.check(self, target, b) for b in boxes]
        self._stats.forwards -= len(boxes) - 1 if boxes else 0
        return out


def test_descend_gives_the_nodes_levels_down_and_stops_at_leaves():
    cfg = SearchConfig()
    full = (0.0, 0.0, 2048.0, 2048.0)
    leaf = leaf_side(2048, 2048, cfg)  # 256: root 2048, 1024, 512, leaves at 256
    one = descend(full, full, cfg, leaf, 1)
    two = descend(full, full, cfg, leaf, 2)
    assert [(t, d) for t, _, d in one] == [(t, 1) for t, _, _ in one] and len(one) == 4
    assert len(two) == 16 and {d for _, _, d in two} == {2}
    area = sum((t[2] - t[0]) * (t[3] - t[1]) for t, _, _ in two)
    assert area == pytest.approx(2048 * 2048)  # the tiles partition the image
    deep = descend(full, full, cfg, leaf, 9)  # past the leaves: every leaf, once
    assert len(deep) == 64 and all(is_leaf(t, leaf) for t, _, _ in deep) and {d for _, _, d in deep} == {3}


def test_the_root_jumps_to_the_level_where_the_target_is_legible():
    runs = {}
    for jump in (0, 1):
        loc = FakeLocalizer({"cup": [CUP]}, detect_side=600)
        cfg = SearchConfig(jump_levels=jump, context_cue=False)
        runs[jump] = (run_search(loc, blank_image(2048, 2048), "cup", cfg), loc)
    plain, (jumped, loc) = runs[0][0], runs[1]
    assert plain.found and jumped.found and jumped.box_xyxy == CUP and jumped.answer_level == 2
    first_expansion = loc.calls[1]
    assert first_expansion[0] == "locate" and len(first_expansion[2]) == 16  # one batched call
    assert jumped.model_calls < plain.model_calls and jumped.nodes_visited < plain.nodes_visited
    levels = sorted({a["level"] for a in jumped.trace.graph.nodes.values()})
    assert levels[:2] == [0, 2]  # level 1 was skipped
    assert jumped.forwards == jumped.model_calls  # no hit check


def test_root_check_answers_a_large_target_at_the_root():
    loc = FakeLocalizer({"big": []}, detect_side=600, decoys={"big": [(BIG, 0.1), ((0, 0, 300, 300), 0.12)]})
    check = BatchedCheck({"big": [BIG]}, p_true=0.95)
    res = run_search(loc, blank_image(2048, 2048), "big", SearchConfig(root_check=4, context_cue=False),
                     hit_check=check)
    assert res.found and res.box_xyxy == BIG and not res.fallback and res.answer_level == 0
    # the root is expanded first (its check is read with its children's boxes, in one pass), then stops
    assert res.nodes_visited == 1 and res.model_calls == 2 and res.stop_reason == "confident"
    assert res.hit_check_calls == 2 and res.hit_check_forwards == 1 and res.forwards == 3
    assert res.hit_check_score == pytest.approx(0.95)


def test_root_check_without_a_batched_check_counts_a_pass_per_box():
    loc = FakeLocalizer({"big": []}, detect_side=600, decoys={"big": [(BIG, 0.1), ((0, 0, 300, 300), 0.12)]})
    res = run_search(loc, blank_image(2048, 2048), "big", SearchConfig(root_check=4, context_cue=False),
                     hit_check=FakeHitCheck({"big": [BIG]}, p_true=0.95))
    assert res.box_xyxy == BIG and res.hit_check_forwards == 2


def test_root_check_below_its_threshold_searches_as_usual():
    loc = FakeLocalizer({"big": []}, detect_side=600, decoys={"big": [(BIG, 0.1)]})
    res = run_search(loc, blank_image(2048, 2048), "big", SearchConfig(root_check=4, context_cue=False),
                     hit_check=BatchedCheck({"big": [BIG]}, p_true=0.8))
    assert res.nodes_visited > 1  # not accepted at the root: the search went on
    off = run_search(FakeLocalizer({"big": []}, detect_side=600, decoys={"big": [(BIG, 0.1)]}),
                     blank_image(2048, 2048), "big", SearchConfig(context_cue=False),
                     hit_check=BatchedCheck({"big": [BIG]}, p_true=0.95))
    assert off.nodes_visited > 1 and off.hit_check_calls == 0  # off by default: nothing read at the root


def test_all_checks_batched_equals_one_box_at_a_time():
    boxes = [BIG, CUP, (0.0, 0.0, 10.0, 10.0)]
    members = [BatchedCheck({"x": [BIG, CUP]}, p_true=0.9), FakeHitCheck({"x": [BIG]}, p_true=0.8, p_false=0.2)]
    both = AllChecks(members, threshold=0.5)
    one_by_one = [both.check("x", b) for b in boxes]
    assert check_many(both, "x", boxes) == one_by_one == [0.8, 0.2, 0.05]
    assert both.stats().calls == 6


@pytest.mark.parametrize("field,value", [("jump_levels", -1), ("root_check", -2), ("root_check_threshold", 0.0),
                                         ("root_check_threshold", 1.5)])
def test_bad_shortcut_settings_name_the_field(field, value):
    with pytest.raises(ConfigError, match=f"search.{field}"):
        SearchConfig(**{field: value})


def test_a_batched_check_reads_a_nodes_confident_boxes_in_one_pass():
    near = (1250.0, 350.0, 1290.0, 390.0)  # a near miss beside the cup, seen by the same nodes
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, score=0.9, decoys={"cup": [(near, 0.95)]})
    cfg = SearchConfig(select="first", compare_rejected=False, context_cue=False)
    batched = BatchedCheck({"cup": [CUP]})
    res = run_search(loc, blank_image(2048, 2048), "cup", cfg, hit_check=batched)
    assert res.box_xyxy == CUP and res.hit_check_calls == 2 and res.hit_check_forwards == 1
    one_by_one = run_search(FakeLocalizer({"cup": [CUP]}, detect_side=600, score=0.9, decoys={"cup": [(near, 0.95)]}),
                            blank_image(2048, 2048), "cup", cfg, hit_check=FakeHitCheck({"cup": [CUP]}))
    assert one_by_one.box_xyxy == CUP and one_by_one.hit_check_forwards == 2


def test_the_root_check_keeps_the_per_target_budget_for_the_search():
    from search.hit_check.config import HitCheckConfig

    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, decoys={"cup": [((0, 0, 300, 300), 0.1)]})
    res = run_search(loc, blank_image(2048, 2048), "cup", SearchConfig(root_check=4, context_cue=False),
                     hit_check=BatchedCheck({"cup": [CUP]}), check_cfg=HitCheckConfig(max_calls=1))
    assert res.box_xyxy == CUP and res.hit_check_score == pytest.approx(0.9)  # the cup was still checked


def test_a_batched_check_reads_the_jumped_nodes_boxes_at_once():
    """Root (its near miss read there), one jump, one batched read of the boxes the jump found new;
    the near miss's tile is visited first and expanded (its leaves' near miss is not read again):
    3 localizer calls and 2 check passes, each box read once."""
    from search.hit_check.config import HitCheckConfig

    near = (300.0, 1500.0, 340.0, 1540.0)  # a near miss in another level-2 tile, scored above the cup
    loc = FakeLocalizer({"cup": [CUP]}, detect_side=600, score=0.8, decoys={"cup": [(near, 0.9)]})
    cfg = SearchConfig(jump_levels=1, context_cue=False, select="first", compare_rejected=False)
    check = BatchedCheck({"cup": [CUP]})
    res = run_search(loc, blank_image(2048, 2048), "cup", cfg, hit_check=check, check_cfg=HitCheckConfig(zoom=0))
    assert res.box_xyxy == CUP and res.answer_level == 2
    assert res.model_calls == 3 and res.hit_check_forwards == 2 and res.forwards == 5
    assert [b for _, b in check.asked] == [near, CUP]  # each box read once: at the root, then in the one pass


def test_root_check_min_side_reads_only_large_root_boxes():
    small = (0.0, 0.0, 100.0, 100.0)  # 5% of the long side
    decoys = {"big": [(BIG, 0.1), (small, 0.12)]}
    for min_side, asked in ((0.0, [small, BIG]), (0.2, [BIG]), (0.5, [])):
        check = BatchedCheck({"big": [BIG]}, p_true=0.95)
        cfg = SearchConfig(root_check=4, root_check_min_side=min_side, context_cue=False, max_nodes=1)
        res = run_search(FakeLocalizer({"big": []}, detect_side=600, decoys=decoys), blank_image(2048, 2048), "big",
                         cfg, hit_check=check)
        root_asked = [b for _, b in check.asked][:len(asked)]
        assert root_asked == asked and res.found == bool(asked)
