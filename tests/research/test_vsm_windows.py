"""research.vsm_windows: recognition in leaf-sized windows, separated from the search's navigation."""

import numpy as np
import pytest
from PIL import Image

from eval.bench_targets import BenchTarget
from research.vsm_windows import measure, windows_for
from search.config import SearchConfig
from seal.core.errors import InputError
from tests.fakes import FakeLocalizer

CUP = (1300.0, 300.0, 1340.0, 340.0)


@pytest.fixture()
def target(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (2048, 1536), (90, 90, 90)).save(path)
    return BenchTarget(path, tmp_path / "img.json", "cup", np.array([CUP]))


def test_windows_hold_the_target_or_none_of_it():
    rng = np.random.default_rng(0)
    boxes = np.array([CUP, (100.0, 100.0, 130.0, 130.0)])
    for _ in range(20):
        present, *absent = windows_for(boxes, 2048, 1536, 320.0, 3, rng)
        assert present[0] <= CUP[0] and present[1] <= CUP[1] and CUP[2] <= present[2] and CUP[3] <= present[3]
        assert present[2] - present[0] == pytest.approx(320.0) and len(absent) == 3
        for w in absent:
            assert 0 <= w[0] and w[2] <= 2048 and 0 <= w[1] and w[3] <= 1536
            assert all(b[2] <= w[0] or b[0] >= w[2] or b[3] <= w[1] or b[1] >= w[3] for b in boxes)


def test_a_localizer_that_sees_up_close_scores_perfectly_and_a_blind_one_does_not(target):
    cfg = SearchConfig()
    sharp = measure(FakeLocalizer({"cup": [CUP]}, detect_side=600), [target] * 4, cfg)
    assert sharp["targets"] == 4 and sharp["absent_windows"] == 12
    assert sharp["top1"] == 1.0 and sharp["auc"] == 1.0 and sharp["wins"] == 1.0
    assert sharp["fires_present"] == 1.0 and sharp["fires_absent"] == 0.0
    blind = measure(FakeLocalizer({"cup": [CUP]}, detect_side=100), [target] * 4, cfg)  # 320 px windows: too big
    assert blind["top1"] == 0.0 and blind["auc"] == 0.5 and blind["fires_present"] == 0.0
    with pytest.raises(InputError, match="no targets"):
        measure(FakeLocalizer({}), [], cfg)


def test_near_miss_windows_come_from_the_sidecar(tmp_path):
    import json

    from research.vsm_windows import near_miss_boxes

    path = tmp_path / "img.png"
    Image.new("RGB", (2048, 1536), (90, 90, 90)).save(path)
    (tmp_path / "cat").mkdir()
    annotation = tmp_path / "cat" / "s.json"
    near, other = (300.0, 1000.0, 340.0, 1040.0), (1700.0, 1200.0, 1740.0, 1240.0)

    def obj(name, color, pattern, shape, box, role):
        return {"name": name, "color": color, "pattern": pattern, "shape": shape, "role": role,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]}

    side = tmp_path / "synth_annotations" / "cat"
    side.mkdir(parents=True)
    (side / "s.json").write_text(json.dumps({"objects": [
        obj("red star", "red", "solid", "star", CUP, "target"),
        obj("solid blue star", "blue", "solid", "star", near, "near_miss"),  # colour changed: a near miss
        obj("solid blue ring", "blue", "solid", "ring", other, "near_miss"),  # two changed: not of "red star"
    ]}))
    assert near_miss_boxes(annotation, "red star").tolist() == [list(near)]
    assert near_miss_boxes(annotation, "green ring").shape == (0, 4)
    assert near_miss_boxes(tmp_path / "nowhere" / "x.json", "red star").shape == (0, 4)
    target = BenchTarget(path, annotation, "red star", np.array([CUP]))
    cfg = SearchConfig()
    sharp = measure(FakeLocalizer({"red star": [CUP]}, detect_side=600), [target] * 3, cfg)
    assert sharp["near_windows"] == 3 and sharp["auc_near"] == 1.0 and sharp["fires_near"] == 0.0
    assert sharp["wins_near"] == 1.0
    fooled = measure(FakeLocalizer({"red star": [CUP, near]}, detect_side=600), [target] * 3, cfg)
    assert fooled["fires_near"] == 1.0 and fooled["wins_near"] == 0.0 and fooled["auc_near"] == 0.5
    (side / "s.json").write_text("{not json")
    with pytest.raises(InputError, match="sidecar"):
        near_miss_boxes(annotation, "red star")


def test_colour_and_pattern_names_are_also_reported_apart(target):
    red, dotted = (BenchTarget(target.image, target.annotation, n, np.array([CUP]))
                   for n in ("red star", "dotted star"))
    report = measure(FakeLocalizer({"red star": [CUP]}, detect_side=600), [red, dotted, red], SearchConfig())
    kinds = report["by_name_kind"]
    assert set(kinds) == {"colour", "pattern"}
    assert kinds["colour"]["targets"] == 2 and kinds["colour"]["top1"] == 1.0
    assert kinds["pattern"]["targets"] == 1 and kinds["pattern"]["top1"] == 0.0  # the fake knows only "red star"
    assert "by_name_kind" not in measure(FakeLocalizer({"cup": [CUP]}, detect_side=600), [target], SearchConfig())
