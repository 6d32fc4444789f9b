"""eval.bench_vsm's measurements on a fake localizer: hits per strategy and per name kind, the node
ratio, the patch calibration, and the quick run (V* alone, no calibration)."""

import numpy as np
import pytest
from PIL import Image

from eval.bench_targets import BenchTarget
from eval.bench_vsm import calibration, check_strategies, format_report, run_bench
from seal.config import SearchCommandConfig
from seal.core.errors import InputError
from tests.fakes import FakeHitCheck, FakeLocalizer

STAR = (1300.0, 300.0, 1340.0, 340.0)


@pytest.fixture()
def targets(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (2048, 1536), (90, 90, 90)).save(path)
    return [BenchTarget(path, tmp_path / "img.json", n, np.array([STAR])) for n in ("red star", "dotted star")]


def test_hits_per_strategy_and_per_name_kind(targets):
    report = run_bench(FakeLocalizer({"red star": [STAR]}, detect_side=600), targets, SearchCommandConfig(),
                       timing_calls=2, log=lambda _: None)
    for strategy in ("vstar", "bfs"):
        m = report["search"][strategy]
        assert m["n"] == 2 and m["found_rate"] == 0.5
        assert m["found_by_name_kind"] == {"colour": "1/1", "pattern": "0/1"}
        assert m["mean_hit_check_calls"] == 0.0
    assert report["vstar_bfs_node_ratio"] < 1.0  # the heatmap leads V* to the star; bfs walks level by level
    assert report["calibration"]["n"] == 2 * 21  # root + 4 + 16 tree patches located per target
    assert report["calibration"]["positives"] >= 1  # the leaf-level patches holding the red star
    assert "colour 1/1, pattern 0/1" in format_report(report)
    assert "hits checked by nothing" in format_report(report)


def test_a_hit_check_is_asked_and_counted(targets):
    """The fake localizer also fires on a decoy; the check rejects it, so the star is found."""
    decoy = (300.0, 1000.0, 340.0, 1040.0)
    localizer = FakeLocalizer({"red star": [STAR]}, detect_side=600, score=0.8, decoys={"red star": [(decoy, 0.95)]})
    report = run_bench(localizer, targets[:1], SearchCommandConfig(), timing_calls=1, log=lambda _: None,
                       hit_check=FakeHitCheck({"red star": [STAR]}), strategies=("vstar",), patch_calibration=False)
    m = report["search"]["vstar"]
    assert m["found_rate"] == 1.0 and m["mean_hit_check_calls"] >= 1
    (row,) = report["rows"]
    assert row["hit_check_calls"] >= 1 and row["iou"] > 0.5


def test_quick_run_searches_with_vstar_alone(targets):
    report = run_bench(FakeLocalizer({"red star": [STAR]}, detect_side=600), targets[:1], SearchCommandConfig(),
                       timing_calls=1, log=lambda _: None, strategies=("vstar",), patch_calibration=False)
    assert set(report["search"]) == {"vstar"} and report["search"]["vstar"]["found_rate"] == 1.0
    assert report["vstar_bfs_node_ratio"] is None and report["calibration"]["n"] == 0
    assert "vstar / bfs nodes: -" in format_report(report)


def test_strategies_must_include_vstar_and_ece_is_the_weighted_gap():
    assert check_strategies(("vstar",)) == ("vstar",)
    for bad in ((), ("bfs",), ("vstar", "dfs")):
        with pytest.raises(InputError, match="--strategies"):
            check_strategies(bad)
    # ten bins; scores 0.15 (right 0 of 2) and 0.95 (right 2 of 2): |0 - 0.15| and |1 - 0.95|, half each
    assert calibration([0.15, 0.15, 0.95, 0.95], [False, False, True, True])["ece"] == \
        pytest.approx(0.5 * 0.15 + 0.5 * 0.05)


def test_the_calibration_patches_are_the_search_trees_first_three_levels():
    from search.config import SearchConfig
    from search.tree import tree_boxes

    boxes = tree_boxes(2246, 1582, SearchConfig())  # leaf side 396: 1 + 4 + 16 nodes
    assert [level for level, _ in boxes] == [0] + [1] * 4 + [2] * 16
    assert boxes[0][1] == (0.0, 0.0, 2246.0, 1582.0)
    for _, (x1, y1, x2, y2) in boxes:
        assert 0 <= x1 < x2 <= 2246 and 0 <= y1 < y2 <= 1582
    assert len(tree_boxes(300, 300, SearchConfig())) < 21  # a small image's tree stops at its leaves
