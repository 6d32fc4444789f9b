import json

import numpy as np
import pytest
from PIL import Image

from seal.core.geometry import iou_xyxy
from seal.core.image_source import ImageSource
from search.localizer import Localizer
from search.oracle import OracleLocalizer
from search.oracle_config import OracleConfig
from seal.core.errors import InputError

# A 40 x 40 px target in a 2400 x 1600 image: 3.7 input px at the root (224 / 2400), 14.9 in a 600 px patch.
TARGET_XYWH = [1500, 900, 40, 40]
TARGET_XYXY = (1500.0, 900.0, 1540.0, 940.0)


def _image(w=2400, h=1600):
    return ImageSource(Image.new("RGB", (w, h)))


def _write_annotation(path, names, boxes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"target_object": names, "bbox": boxes, "question": "q?", "options": ["a", "b"]}))
    return path


def _oracle(tmp_path, cfg=None, names=("red ball",), boxes=(TARGET_XYWH,)):
    ann = _write_annotation(tmp_path / "bench" / "direct_attributes" / "s.json", list(names), [list(b) for b in boxes])
    oracle = OracleLocalizer.from_annotation(ann, cfg or OracleConfig(false_positive_rate=0.0))
    oracle.set_image(_image())
    return oracle


def test_is_a_localizer(tmp_path):
    assert isinstance(_oracle(tmp_path), Localizer)


def test_legible_only_at_enough_input_resolution(tmp_path):
    oracle = _oracle(tmp_path)
    root = oracle.locate("red ball", [(0, 0, 2400, 1600)])[0]
    assert root.best_score == 0.0  # 3.7 input px: illegible
    patch = oracle.locate("Red  Ball", [(1200, 600, 1800, 1100)])[0]  # 600 px long side -> 14.9 px
    assert patch.best_score > 0.75
    assert iou_xyxy(patch.best_box, TARGET_XYXY) > 0.7
    too_big = oracle.locate("red ball", [(1000, 500, 1700, 1100)])[0]  # 700 px -> 12.8 px
    assert too_big.best_score == 0.0


def test_mostly_cut_target_is_not_detected(tmp_path):
    oracle = _oracle(tmp_path)
    # 50 % of the box inside, its visible 20 px side spans 14.9 input px: legible size, too little visible
    cut = oracle.locate("red ball", [(1220, 780, 1520, 1080)])[0]
    assert cut.best_score == 0.0
    assert cut.heatmap.max() > 0  # but the heatmap still points at it
    # 75 % inside (30 px visible -> 22 input px): detected, the box is the visible part
    most = oracle.locate("red ball", [(1230, 780, 1530, 1080)])[0]
    assert most.best_score > 0.75 and iou_xyxy(most.best_box, (1500, 900, 1530, 940)) > 0.7


def test_cue_peak_lands_on_target_cell(tmp_path):
    cfg = OracleConfig(false_positive_rate=0.0)
    oracle = _oracle(tmp_path, cfg)
    region = (0, 0, 2400, 1600)
    heat = oracle.locate("red ball", [region])[0].heatmap
    assert heat.shape == (cfg.heatmap_size, cfg.heatmap_size) and heat.dtype == np.float32
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    cx, cy = 1520, 920
    assert abs(col - cx / 2400 * cfg.heatmap_size) <= 1.5
    assert abs(row - cy / 1600 * cfg.heatmap_size) <= 1.5
    assert heat.max() > 5.0  # above the engine's root cue threshold (6.0) minus noise
    # a region without the target: only baseline + noise
    empty = oracle.locate("red ball", [(0, 0, 1000, 800)])[0].heatmap
    assert empty.max() < 0.0


def test_unknown_target_is_never_found(tmp_path):
    oracle = _oracle(tmp_path)
    det = oracle.locate("blue car", [(1200, 600, 1800, 1100)])[0]
    assert det.best_score == 0.0 and det.heatmap.max() < 0.0
    assert oracle.suggest_region("blue car", (0, 0, 2400, 1600)) is None


def test_deterministic_and_order_independent(tmp_path):
    a, b = _oracle(tmp_path / "a"), _oracle(tmp_path / "b")
    regions = [(1200, 600, 1800, 1100), (0, 0, 1200, 800), (0, 0, 2400, 1600)]
    da = a.locate("red ball", regions)
    db = list(reversed(b.locate("red ball", list(reversed(regions)))))
    for x, y in zip(da, db):
        np.testing.assert_array_equal(x.heatmap, y.heatmap)
        np.testing.assert_array_equal(x.scores, y.scores)
        np.testing.assert_array_equal(x.boxes_xyxy, y.boxes_xyxy)
    np.testing.assert_array_equal(a.suggest_region("red ball", regions[2]), b.suggest_region("red ball", regions[2]))
    other_seed = OracleLocalizer(a.targets, OracleConfig(), seed=1)
    other_seed.set_image(_image())
    assert not np.array_equal(other_seed.locate("red ball", regions[:1])[0].heatmap, da[0].heatmap)


def test_false_positive_rate(tmp_path):
    cfg = OracleConfig(false_positive_rate=0.2, false_positive_max_score=0.45)
    oracle = _oracle(tmp_path, cfg)
    regions = [(x, y, x + 300, y + 300) for x in range(0, 1200, 30) for y in range(0, 600, 60)]  # target-free
    dets = oracle.locate("red ball", regions)
    hits = [d.best_score for d in dets if len(d.scores)]
    assert 0.13 < len(hits) / len(regions) < 0.27
    assert all(0.05 <= s <= 0.45 for s in hits)
    assert oracle.stats().extra["false_positives"] == len(hits)


def test_counting_multiple_instances(tmp_path):
    boxes = [[100, 100, 50, 50], [400, 300, 50, 50], [2000, 1400, 50, 50]]
    oracle = _oracle(tmp_path, names=["cup", "cup", "cup"], boxes=boxes)
    det = oracle.locate("cup", [(0, 0, 600, 600)])[0]
    assert len(det.scores) == 2
    found = sorted(det.boxes_xyxy.tolist())
    assert iou_xyxy(found[0], [100, 100, 150, 150]) > 0.7 and iou_xyxy(found[1], [400, 300, 450, 350]) > 0.7


def test_context_cue_points_at_target_when_accurate(tmp_path):
    oracle = _oracle(tmp_path, OracleConfig(context_accuracy=1.0))
    heat = oracle.suggest_region("red ball", (0, 0, 2400, 1600))
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    assert abs(col - 1520 / 2400 * 32) <= 4 and abs(row - 920 / 1600 * 32) <= 4
    wrong = _oracle(tmp_path / "w", OracleConfig(context_accuracy=0.0)).suggest_region("red ball", (0, 0, 2400, 1600))
    row, col = np.unravel_index(np.argmax(wrong), wrong.shape)
    assert np.hypot((col - 1520 / 2400 * 32) * 75, (row - 920 / 1600 * 32) * 50) > 400  # > 0.3 x long side - slack
    # target absent from the region: still an answer (no ground-truth leak), not None
    assert oracle.suggest_region("red ball", (0, 0, 800, 800)) is not None


def test_stats_cache_shared_across_targets(tmp_path):
    oracle = _oracle(tmp_path, names=["red ball", "blue car"], boxes=[TARGET_XYWH, [100, 100, 40, 40]])
    regions = [(0, 0, 1200, 800), (1200, 0, 2400, 800)]
    oracle.locate("red ball", regions)
    before = oracle.stats()
    assert (before.patches_encoded, before.encode_cache_hits) == (2, 0)
    oracle.locate("blue car", regions)
    assert (before.patches_encoded, before.encode_cache_hits) == (2, 0)  # a snapshot, not live counters
    oracle.suggest_region("blue car", regions[0])
    assert (oracle.stats().patches_encoded, oracle.stats().encode_cache_hits) == (2, 3)
    oracle.set_image(_image())
    assert oracle.stats().patches_encoded == 0


def test_sidecar_near_miss_gives_weaker_blob(tmp_path):
    bench = tmp_path / "bench"
    ann = _write_annotation(bench / "direct_attributes" / "s.json", ["red star"], [[1800, 1200, 40, 40]])
    sidecar = bench / "synth_annotations" / "direct_attributes" / "s.json"
    sidecar.parent.mkdir(parents=True)

    def obj(name, shape, color, box, role):
        return {"name": name, "shape": shape, "color": color, "pattern": "solid", "role": role, "bbox": box}

    sidecar.write_text(json.dumps({"objects": [
        obj("red star", "star", "red", [1800, 1200, 40, 40], "target"),
        obj("blue star", "star", "blue", [300, 300, 40, 40], "near_miss"),  # shares shape + pattern: 2/3
        obj("green cube", "cube", "green", [300, 1200, 40, 40], "near_miss"),  # shares pattern: 1/3
        obj("red cube", "cube", "red", [1300, 300, 40, 40], "distractor"),  # plain clutter: ignored
    ]}))
    cfg = OracleConfig(false_positive_rate=0.0, heatmap_noise=0.0)
    oracle = OracleLocalizer.from_annotation(ann, cfg)
    oracle.set_image(_image())
    np.testing.assert_allclose(oracle.distractors["red star"][:, 4], [2 / 3, 1 / 3])
    near = oracle.locate("red star", [(0, 0, 1000, 800)])[0]
    assert near.best_score == 0.0  # a distractor is never a detection
    far = oracle.locate("red star", [(0, 800, 1000, 1600)])[0]
    # peaks: -4 + (0.3 * 8 * w + 4) for weight w (the blob centre falls between heatmap cells)
    assert near.heatmap.max() == pytest.approx(0.3 * 8 * 2 / 3, abs=0.2)
    assert far.heatmap.max() == pytest.approx(0.3 * 8 / 3, abs=0.2)
    clutter = oracle.locate("red star", [(1000, 0, 1800, 800)])[0].heatmap
    assert clutter.max() == pytest.approx(-4.0, abs=1e-3)


@pytest.mark.parametrize("content, needle", [
    ("{not json", "malformed"),
    ("[1, 2]", "JSON object"),
    ('{"target_object": ["a"]}', "bbox"),
    ('{"target_object": ["a", "b"], "bbox": [[0, 0, 5, 5]]}', "2 names"),
    ('{"target_object": ["a"], "bbox": [[0, 0, -5, 5]]}', "bbox[0]"),
    ('{"target_object": [""], "bbox": [[0, 0, 5, 5]]}', "target_object[0]"),
])
def test_bad_annotation_raises_input_error(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        OracleLocalizer.from_annotation(path, OracleConfig())
    assert str(path) in str(err.value) and needle in str(err.value)


def test_missing_annotation_and_wrong_image(tmp_path):
    with pytest.raises(InputError, match="not found"):
        OracleLocalizer.from_annotation(tmp_path / "nope.json", OracleConfig())
    oracle = OracleLocalizer.from_annotation(
        _write_annotation(tmp_path / "a.json", ["x"], [[3000, 10, 20, 20]]), OracleConfig())
    with pytest.raises(InputError, match="outside"):
        oracle.set_image(_image())
