import numpy as np
import pytest

from seal.core.geometry import (
    Frame,
    area_xyxy,
    clip_xyxy,
    cxcywh_to_xyxy,
    denormalize_xyxy,
    intersection_fraction_xyxy,
    iou_xyxy,
    normalize_xyxy,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)

RNG = np.random.default_rng(0)
BOXES = np.concatenate([RNG.uniform(0, 500, (20, 2)), RNG.uniform(500, 1000, (20, 2))], axis=1)


def test_format_round_trips():
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(BOXES)), BOXES)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(BOXES)), BOXES)
    np.testing.assert_allclose(denormalize_xyxy(normalize_xyxy(BOXES, 1000, 800), 1000, 800), BOXES)


def test_known_values():
    np.testing.assert_allclose(xywh_to_xyxy([10, 20, 30, 40]), [10, 20, 40, 60])
    np.testing.assert_allclose(xyxy_to_cxcywh([0, 0, 10, 20]), [5, 10, 10, 20])
    assert area_xyxy([0, 0, 10, 20]) == 200
    np.testing.assert_allclose(clip_xyxy([-5, -5, 50, 50], 40, 30), [0, 0, 40, 30])


def test_iou():
    assert iou_xyxy([0, 0, 10, 10], [0, 0, 10, 10]) == pytest.approx(1.0)
    assert iou_xyxy([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou_xyxy([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    m = iou_xyxy(BOXES[:3], BOXES[:5])
    assert m.shape == (3, 5)
    np.testing.assert_allclose(np.diag(m[:, :3]), 1.0)


def test_intersection_fraction():
    assert intersection_fraction_xyxy([0, 0, 10, 10], [5, 0, 100, 100]) == pytest.approx(0.5)
    assert intersection_fraction_xyxy([0, 0, 10, 10], [0, 0, 100, 100]) == pytest.approx(1.0)


def test_bad_shape_raises():
    with pytest.raises(ValueError):
        xyxy_to_xywh([1, 2, 3])


@pytest.mark.parametrize("letterbox", [True, False])
def test_frame_round_trip(letterbox):
    frame = Frame((100.0, 50.0, 900.0, 450.0), 224, 224, letterbox=letterbox)
    np.testing.assert_allclose(frame.input_to_full_xyxy(frame.full_to_input_xyxy(BOXES)), BOXES)
    np.testing.assert_allclose(frame.region_to_full_xyxy(frame.full_to_region_xyxy(BOXES)), BOXES)


def test_frame_letterbox_maps_region_corners():
    frame = Frame((100.0, 50.0, 900.0, 450.0), 224, 224, letterbox=True)  # 800 x 400 region
    # scale = 224 / 800 = 0.28; scaled height 112, so 56 px of padding on top and bottom
    np.testing.assert_allclose(frame.full_to_input_xyxy([100, 50, 900, 450]), [0, 56, 224, 168], atol=1e-9)
    stretched = Frame((100.0, 50.0, 900.0, 450.0), 224, 224, letterbox=False)
    np.testing.assert_allclose(stretched.full_to_input_xyxy([100, 50, 900, 450]), [0, 0, 224, 224], atol=1e-9)
