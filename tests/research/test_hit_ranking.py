"""research.hit_ranking: every confident instance of a full search, ranked by the localizer and by the check."""

import json

import numpy as np
import pytest
from PIL import Image

from eval.bench_targets import BenchTarget
from research.hit_ranking import main, measure, ranking_keys, summarize
from search.hit_check.protocol import all_checks
from seal.config import SearchCommandConfig as Config
from seal.core.errors import InputError
from tests.fakes import FakeLocalizer, FakeHitCheck

STAR = (1300.0, 300.0, 1340.0, 340.0)
RING = (300.0, 1000.0, 340.0, 1040.0)  # a near miss the localizer scores above the target


@pytest.fixture()
def target(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (2048, 1536), (90, 90, 90)).save(path)
    return BenchTarget(path, tmp_path / "s.json", "red star", np.array([STAR]))


def _localizer():
    return FakeLocalizer({"red star": [STAR]}, detect_side=600, score=0.8, decoys={"red star": [(RING, 0.95)]})


def test_the_check_ranks_the_target_first_where_the_score_does_not(target):
    report = measure(_localizer(), [FakeHitCheck({"red star": [STAR]})], [target], Config(), log=lambda m: None)
    (row,) = report["rows"]
    assert sorted(round(c["score"], 2) for c in row["candidates"]) == [0.8, 0.95]
    assert report["in_candidates"] == 1.0 and report["accept_target"] == 1.0
    assert report["wrong_accepted_per_target"] == 0.0
    assert report["top1"] == {"score": 0.0, "check": 1.0, "check_x_score": 1.0, "product_x_score": 1.0}
    blind = measure(_localizer(), [FakeHitCheck({}, abstain=True)], [target], Config(), log=lambda m: None)
    assert blind["top1"]["score"] == 0.0 and blind["top1"]["check"] in (0.0, 1.0)  # ties: the first candidate
    assert blind["accept_target"] == 1.0 and blind["wrong_accepted_per_target"] == 1.0  # abstaining accepts


def test_members_combine_as_all_of_and_as_a_product():
    assert all_checks([0.9, 0.2, 0.1], 0.5) == 0.2  # asking stops at the first rejection
    assert all_checks([None, 0.7], 0.5) == 0.7 and all_checks([None, None], 0.5) is None
    keys = ranking_keys(0.8, [0.9, None], 0.5)
    assert keys["check"] == 0.9 and keys["check_x_score"] == pytest.approx(0.72)
    assert keys["product_x_score"] == pytest.approx(0.9 * 0.5 * 0.8)
    rows = [{"candidates": []}, {"candidates": [{"iou": 0.7, "score": 0.6, "probs": [0.9]}]}]
    s = summarize(rows, 0.5)
    assert s["in_candidates"] == 0.5 and s["top1"]["check"] == 0.5 and s["mean_candidates"] == 0.5


def test_reused_candidates_must_cover_the_targets(target):
    with pytest.raises(InputError, match="no candidates"):
        measure(_localizer(), [], [target], Config(), reused={}, log=lambda m: None)
    reused = {(str(target.annotation), "red star"): [(list(STAR), 0.8)]}
    again = measure(_localizer(), [FakeHitCheck({"red star": [STAR]})], [target], Config(), reused, log=lambda m: None)
    assert again["top1"]["check"] == 1.0 and len(again["rows"][0]["candidates"]) == 1


def test_a_malformed_reuse_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"sample": "s"}]}))
    code = main(["--bench", str(tmp_path), "--reuse", str(bad), "--out", str(tmp_path / "r.json")])
    assert code == 2 and "not a hit_ranking report" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
