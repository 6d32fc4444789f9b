"""VSM losses: perfect vs wrong predictions, Hungarian matching, absent targets, DETRLoss parity,
and the target rasterisation in the model-input frame."""

import numpy as np
import pytest
import torch

from seal.core.geometry import Frame
from search.vsm.config import LOSS_TERMS, VSMLossConfig
from search.vsm.losses import VSMCriterion, VSMTargets
from search.vsm.model import VSMOutput
from search.vsm.targets import box_targets_cxcywh, heatmap_target
from seal.core.errors import ConfigError

BIG = 30.0


def _output(heatmap, boxes, box_logits, lm_logits=None, lm_targets=None, quality=None):
    b = heatmap.shape[0]
    return VSMOutput(heatmap=heatmap, quality=quality if quality is not None else torch.ones(b),
                     boxes=boxes, box_logits=box_logits, loc_state=torch.zeros(b, 8),
                     lm_logits=lm_logits, lm_targets=lm_targets)


def _case():
    """Row 0: target present with 2 instances; row 1: target absent."""
    masks = torch.zeros(2, 16, 16)
    masks[0, 2:6, 3:9] = 1
    masks[0, 10:14, 10:12] = 1
    gt = [torch.tensor([[0.375, 0.25, 0.375, 0.25], [0.6875, 0.75, 0.125, 0.25]]), torch.zeros(0, 4)]
    return VSMTargets(heatmaps=masks, boxes=gt), masks, gt


def _perfect(masks, gt):
    heat = (masks * 2 - 1) * BIG
    boxes = torch.rand(2, 4, 4) * 0.5 + 0.25
    boxes[0, 3], boxes[0, 1] = gt[0][0], gt[0][1]  # the instances sit in queries 3 and 1
    logits = torch.full((2, 4), -BIG)
    logits[0, 3] = logits[0, 1] = BIG
    lm_targets = torch.tensor([5, 7, 2])
    lm_logits = torch.full((3, 10), -BIG)
    lm_logits[torch.arange(3), lm_targets] = BIG
    return _output(heat, boxes, logits, lm_logits, lm_targets, quality=torch.ones(2))


def test_perfect_predictions_give_near_zero_and_wrong_ones_large():
    targets, masks, gt = _case()
    crit = VSMCriterion()
    good = crit(_perfect(masks, gt), targets)
    active = [t for t in LOSS_TERMS if crit.weights[t] > 0]  # the auxiliary attribute term is off by default
    assert "attributes" not in active and set(good) == {"total", *active}
    for name, value in good.items():
        assert torch.isfinite(value) and value.item() < 1e-3, (name, value)

    wrong = _perfect(masks, gt)
    wrong.heatmap = -wrong.heatmap
    wrong.box_logits = -wrong.box_logits
    wrong.boxes = wrong.boxes.flip(-1) * 0.5  # displaced and reshaped
    wrong.lm_logits = -wrong.lm_logits
    wrong.quality = torch.ones(2)  # claims a perfect mask
    bad = crit(wrong, targets)
    for name in active:
        assert bad[name].item() > 0.1, (name, bad[name])
    assert bad["total"].item() > 100 * max(good["total"].item(), 1e-3)


def test_hungarian_matching_pairs_queries_with_their_instances():
    targets, masks, gt = _case()
    crit = VSMCriterion()
    matches = crit.match(_perfect(masks, gt), targets)
    assert len(matches) == 2
    q, g = matches[0]
    assert dict(zip(q.tolist(), g.tolist())) == {3: 0, 1: 1}
    assert matches[1][0].numel() == 0  # absent target: nothing matched


def test_absent_target_makes_every_query_a_negative():
    masks = torch.zeros(1, 16, 16)
    targets = VSMTargets(heatmaps=masks, boxes=[torch.zeros(0, 4)])
    crit = VSMCriterion(VSMLossConfig(weights={"box_focal": 1.0, "box_l1": 1.0, "box_giou": 1.0,
                                               "heatmap_dice": 1.0}))
    boxes = torch.rand(1, 4, 4, requires_grad=True)
    quiet = crit(_output(torch.full((1, 16, 16), -BIG), boxes, torch.full((1, 4), -8.0)), targets)
    claims = crit(_output(torch.full((1, 16, 16), BIG), boxes, torch.full((1, 4), 8.0)), targets)
    assert quiet["box_focal"].item() < 1e-3 < 1.0 < claims["box_focal"].item()
    assert quiet["heatmap_dice"].item() < 1e-3 and claims["heatmap_dice"].item() > 0.9
    assert quiet["box_l1"].item() == 0.0 and quiet["box_giou"].item() == 0.0
    claims["total"].backward()  # the zero box terms keep the graph connected
    assert boxes.grad is not None


def test_valid_flags_remove_rows_from_a_head():
    targets, masks, gt = _case()
    out = _perfect(masks, gt)
    out.heatmap[1] = BIG  # row 1 (absent target) now claims everything...
    out.box_logits[1] = BIG
    crit = VSMCriterion()
    assert crit(out, targets)["heatmap_bce"].item() > 1.0
    flagged = VSMTargets(heatmaps=masks, boxes=gt, heatmap_valid=torch.tensor([True, False]),
                         boxes_valid=torch.tensor([True, False]))
    losses = crit(out, flagged)  # ...but is not supervised
    assert losses["heatmap_bce"].item() < 1e-3 and losses["box_focal"].item() < 1e-3


def test_box_terms_match_ultralytics_detr_loss():
    from ultralytics.models.utils.loss import DETRLoss

    torch.manual_seed(0)
    gt = [torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.3]]), torch.zeros(0, 4),
          torch.tensor([[0.5, 0.5, 0.4, 0.4]])]
    boxes = torch.rand(3, 6, 4) * 0.6 + 0.2
    logits = torch.randn(3, 6)
    out = _output(torch.zeros(3, 16, 16), boxes, logits)
    targets = VSMTargets(heatmaps=torch.zeros(3, 16, 16), boxes=gt)
    crit = VSMCriterion(VSMLossConfig(weights={"box_focal": 1.0, "box_l1": 1.0, "box_giou": 1.0}))
    ours = crit(out, targets)
    ref = DETRLoss(nc=1, loss_gain={"class": 1, "bbox": 1, "giou": 1}, aux_loss=False, use_fl=True,
                   gamma=crit.cfg.focal_gamma, alpha=crit.cfg.focal_alpha)
    batch = {"cls": torch.zeros(3, dtype=torch.long), "bboxes": torch.cat(gt), "gt_groups": [2, 0, 1]}
    theirs = ref(boxes[None], logits[None, ..., None], batch)
    assert torch.allclose(ours["box_focal"], theirs["loss_class"], atol=1e-5)
    assert torch.allclose(ours["box_l1"], theirs["loss_bbox"], atol=1e-5)
    assert torch.allclose(ours["box_giou"], theirs["loss_giou"], atol=1e-5)


def test_heatmap_resolution_mismatch_and_bad_config_are_errors():
    targets, masks, gt = _case()
    out = _perfect(masks, gt)
    out.heatmap = out.heatmap[:, :8, :8]
    with pytest.raises(ValueError, match="resolution"):
        VSMCriterion()(out, targets)
    with pytest.raises(ConfigError, match="unknown terms"):
        VSMLossConfig(weights={"mask": 1.0})


# ---- targets in the model-input frame ------------------------------------------------------------

def test_box_targets_in_a_letterboxed_frame():
    frame = Frame((100.0, 50.0, 300.0, 150.0), 32, 32, letterbox=True)  # 200x100 -> 32x16, 8 px pad top
    boxes = box_targets_cxcywh(frame, [[150, 75, 200, 125], [290, 140, 400, 200], [0, 0, 10, 10]])
    assert boxes.shape == (1, 4)  # the second is mostly outside, the third fully outside
    cx, cy, w, h = boxes[0]
    assert np.allclose([cx, cy, w, h], [(50 + 25) * 0.16 / 32, (8 + (25 + 25) * 0.16) / 32, 50 * 0.16 / 32,
                                        50 * 0.16 / 32], atol=1e-6)
    assert box_targets_cxcywh(frame, np.zeros((0, 4))).shape == (0, 4)
    half = box_targets_cxcywh(frame, [[280, 60, 320, 80]], min_visible=0.5)  # exactly half inside
    assert half.shape == (1, 4) and np.isclose(half[0, 2], 20 * 0.16 / 32)  # clipped to the region


def test_heatmap_target_marks_the_object_and_not_the_padding():
    frame = Frame((100.0, 50.0, 300.0, 150.0), 32, 32, letterbox=True)
    mask = heatmap_target(frame, (16, 16), boxes_xyxy=[[100, 50, 200, 100]])  # the region's top-left quarter
    assert mask.shape == (16, 16) and mask.dtype == np.float32
    assert mask[4:8, 0:8].all() and mask.sum() == 32  # rows 4..7 (content starts at row 4), cols 0..7
    poly = heatmap_target(frame, (16, 16), polygons=[[[100, 50], [300, 50], [300, 150], [100, 150]]])
    assert poly[4:12].all() and poly[:4].sum() == 0 and poly[12:].sum() == 0  # padding stays 0
    tiny = heatmap_target(frame, (16, 16), boxes_xyxy=[[201, 101, 202, 102]])
    assert tiny.sum() == 1  # sub-cell object still marks its cell
    assert heatmap_target(frame, (16, 16)).sum() == 0


def test_balanced_attribute_cross_entropy_weighs_objects_like_the_background():
    from search.vsm.losses import attribute_cross_entropy

    torch.manual_seed(0)
    logits = [torch.randn(2, 4, 3, 3)]
    labels = torch.zeros(2, 1, 3, 3, dtype=torch.long)
    labels[0, 0, 1, 1] = 3  # one object cell among 17 background cells
    labels[1, 0, 0, 0] = -100
    ce = torch.nn.functional.cross_entropy(logits[0], labels[:, 0].clamp_min(0), reduction="none")
    obj, bg = labels[:, 0] > 0, labels[:, 0] == 0
    expected = (ce[obj].mean() + ce[bg].mean()) / 2
    assert torch.allclose(attribute_cross_entropy(logits, labels, balanced=True), expected)
    plain = torch.nn.functional.cross_entropy(logits[0], labels[:, 0], ignore_index=-100)
    assert torch.allclose(attribute_cross_entropy(logits, labels, balanced=False), plain)
    with pytest.raises(ValueError, match="label channels"):
        attribute_cross_entropy(logits * 2, labels, balanced=True)
