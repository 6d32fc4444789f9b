"""research.hit_check_near_misses: the hit check's acceptance of targets and of near misses, by differing word."""

import json

import numpy as np
import pytest
from PIL import Image

from eval.bench_targets import BenchTarget
from research.hit_check_near_misses import measure
from seal.core.errors import InputError
from tests.fakes import FakeHitCheck

STAR = (1300.0, 300.0, 1340.0, 340.0)
BLUE_STAR = (300.0, 1000.0, 340.0, 1040.0)  # colour differs
RED_RING = (1700.0, 1200.0, 1740.0, 1240.0)  # shape differs


@pytest.fixture()
def target(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (2048, 1536), (90, 90, 90)).save(path)
    (tmp_path / "cat").mkdir()

    def obj(color, shape, box, role):
        return {"name": f"{color} {shape}", "color": color, "pattern": "solid", "shape": shape, "role": role,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]}

    side = tmp_path / "synth_annotations" / "cat"
    side.mkdir(parents=True)
    (side / "s.json").write_text(json.dumps({"objects": [
        obj("red", "star", STAR, "target"), obj("blue", "star", BLUE_STAR, "near_miss"),
        obj("red", "ring", RED_RING, "near_miss")]}))
    return BenchTarget(path, tmp_path / "cat" / "s.json", "red star", np.array([STAR]))


def test_a_perfect_check_and_one_fooled_by_shapes(target):
    perfect = measure(FakeHitCheck({"red star": [STAR]}), [target] * 2, 0.5, 10**8)
    assert perfect["targets"] == 2 and perfect["near_boxes"] == 4
    assert perfect["accept_target"] == 1.0 and perfect["accept_near"] == 0.0 and perfect["wins"] == 1.0
    assert perfect["accept_near_by_word"] == {"color": "0/2", "shape": "0/2"}
    shapes = measure(FakeHitCheck({"red star": [STAR, RED_RING]}), [target], 0.5, 10**8)
    assert shapes["accept_near_by_word"] == {"color": "0/1", "shape": "1/1"} and shapes["wins"] == 0.0
    abstains = measure(FakeHitCheck({}, abstain=True), [target], 0.5, 10**8)  # None accepts
    assert abstains["accept_target"] == 1.0 and abstains["accept_near"] == 1.0


def test_a_target_without_a_sidecar_is_an_error(target, tmp_path):
    lost = BenchTarget(target.image, tmp_path / "elsewhere" / "s.json", "red star", np.array([STAR]))
    with pytest.raises(InputError, match="sidecar"):
        measure(FakeHitCheck({}), [lost], 0.5, 10**8)
    with pytest.raises(InputError, match="no targets"):
        measure(FakeHitCheck({}), [], 0.5, 10**8)


def test_jittered_boxes_show_a_check_that_needs_the_exact_box(target):
    exact = measure(FakeHitCheck({"red star": [STAR]}), [target], 0.5, 10**8, jitter=0.0)
    assert exact["accept_target"] == 1.0
    # edges moved by up to 40% of the side: the fake check wants IoU >= 0.5 with the true box
    moved = measure(FakeHitCheck({"red star": [STAR]}), [target] * 20, 0.5, 10**8, jitter=0.4)
    assert 0.0 < moved["accept_target"] < 1.0
