"""Heatmap evidence and the pluggable priority scorers (search/priority.py), on their own."""

import warnings

import numpy as np
import pytest

from search.config import SearchConfig
from search.priority import (SCORERS, AncestorDecay, MaxEvidence, ParentOnly, PriorityScorer, ancestor_evidence,
                             heatmap_evidence, make_scorer, register_scorer, sigmoid)
from seal.core.errors import ConfigError

HOT, COLD = 30.0, -30.0  # sigmoid ~ 1 and ~ 0


def quadrant_heat(shape=(4, 4)):
    heat = np.full(shape, COLD, dtype=np.float32)
    h, w = shape
    heat[: h // 2, w // 2:] = HOT  # top-right quadrant hot
    return heat


def test_evidence_reads_the_covered_cells():
    heat, region = quadrant_heat(), (0, 0, 400, 400)
    assert heatmap_evidence(heat, region, (200, 0, 400, 200)) == pytest.approx(1.0, abs=1e-6)
    assert heatmap_evidence(heat, region, (0, 200, 200, 400)) == pytest.approx(0.0, abs=1e-6)
    assert heatmap_evidence(heat, region, (0, 0, 400, 400)) == pytest.approx(0.25, abs=1e-6)
    # a box smaller than one cell reads that cell
    assert heatmap_evidence(heat, region, (390, 10, 395, 15)) == pytest.approx(1.0, abs=1e-6)


def test_evidence_is_area_weighted():
    heat, region = quadrant_heat(), (0, 0, 400, 400)
    # x from 150 to 250: half a cold cell (100-200 is cold) and half a hot one (200-300), top row
    assert heatmap_evidence(heat, region, (150, 0, 250, 100)) == pytest.approx(0.5, abs=1e-6)
    # 3/4 of the box over hot cells
    assert heatmap_evidence(heat, region, (175, 0, 275, 100)) == pytest.approx(0.75, abs=1e-6)


def test_evidence_maps_the_box_through_the_region_frame():
    heat = quadrant_heat()
    region = (1000, 500, 1800, 900)  # 800 x 400, not at the origin, not square
    assert heatmap_evidence(heat, region, (1400, 500, 1800, 700)) == pytest.approx(1.0, abs=1e-6)
    assert heatmap_evidence(heat, region, (1000, 700, 1400, 900)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (32, 32), (5, 64)])
def test_evidence_for_any_heatmap_resolution(shape):
    region = (0, 0, 640, 480)
    heat = np.full(shape, 0.0, dtype=np.float32)
    assert heatmap_evidence(heat, region, (10, 10, 20, 20)) == pytest.approx(0.5)
    if shape[1] >= 2:
        heat[:, shape[1] // 2:] = HOT  # right half (of the cells) hot
        right = (640 * (shape[1] // 2) / shape[1], 0, 640, 480)
        assert heatmap_evidence(heat, region, right) == pytest.approx(1.0, abs=1e-6)


def test_evidence_counts_only_the_part_inside_the_region():
    heat, region = quadrant_heat(), (0, 0, 400, 400)
    # a box that sticks out of the region on the right: only (200..400, 0..200) counts
    assert heatmap_evidence(heat, region, (200, 0, 900, 200)) == pytest.approx(1.0, abs=1e-6)
    assert heatmap_evidence(heat, region, (500, 0, 900, 200)) == 0.0  # no intersection


def test_extreme_logits_do_not_overflow():
    heat = np.array([[-1e4, 1e4]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert heatmap_evidence(heat, (0, 0, 2, 1), (0, 0, 2, 1)) == pytest.approx(0.5)
        assert sigmoid(np.array([-800.0]))[0] == 0.0


def test_ancestor_evidence_reads_the_child_box_in_every_ancestor_heatmap():
    # root heatmap (over 0..800): hot only on x in 600..800, y in 0..200
    root_heat = np.full((4, 4), COLD, dtype=np.float32)
    root_heat[0, 3] = HOT
    # parent (400..800 x 0..400) heatmap: hot in its bottom-left cell only
    parent_heat = np.full((2, 2), COLD, dtype=np.float32)
    parent_heat[1, 0] = HOT
    guides = [(root_heat, (0, 0, 800, 800)), (parent_heat, (400, 0, 800, 400))]
    top_right = ancestor_evidence((600, 0, 800, 200), guides)
    bottom_left = ancestor_evidence((400, 200, 600, 400), guides)
    assert top_right == pytest.approx([1.0, 0.0], abs=1e-6)
    assert bottom_left == pytest.approx([0.0, 1.0], abs=1e-6)


def test_ancestor_decay_weights_levels_by_base():
    s = AncestorDecay(SearchConfig(level_weight_base=4.0, detection_priority_weight=0.0))
    assert s.combine([1.0, 1.0, 1.0]) == pytest.approx(1 + 1 / 4 + 1 / 16)
    assert s.combine([0.0, 0.0, 1.0]) == pytest.approx(1 / 16)
    assert AncestorDecay(SearchConfig(level_weight_base=2.0)).combine([0.0, 1.0]) == pytest.approx(0.5)
    assert s.combine([]) == 0.0


def test_parent_only_and_max():
    cfg = SearchConfig()
    assert ParentOnly(cfg).combine([0.9, 0.2]) == 0.2 and ParentOnly(cfg).combine([]) == 0.0
    assert MaxEvidence(cfg).combine([0.2, 0.9, 0.1]) == 0.9 and MaxEvidence(cfg).combine([]) == 0.0


def test_priority_adds_the_weighted_detection_score():
    s = make_scorer(SearchConfig(priority_scorer="parent_only", detection_priority_weight=2.0))
    assert s.priority([0.1, 0.3], 0.4) == pytest.approx(0.3 + 2.0 * 0.4)
    assert make_scorer(SearchConfig(detection_priority_weight=0.0)).priority([0.5], 1.0) == pytest.approx(0.5)


def test_registry_by_name():
    for name, cls in (("ancestor_decay", AncestorDecay), ("parent_only", ParentOnly), ("max", MaxEvidence)):
        assert isinstance(make_scorer(SearchConfig(priority_scorer=name)), cls)
    with pytest.raises(ConfigError, match="search.priority_scorer"):
        make_scorer(SearchConfig(priority_scorer="nope"))  # type: ignore[arg-type]


def test_register_a_new_scorer():
    @register_scorer("test_min")
    class MinEvidence(PriorityScorer):
        def combine(self, evidence):
            return min(evidence) if evidence else 0.0

    try:
        scorer = make_scorer(SearchConfig(priority_scorer="test_min"))  # type: ignore[arg-type]
        assert scorer.name == "test_min" and scorer.combine([0.3, 0.7]) == 0.3
    finally:
        del SCORERS["test_min"]
