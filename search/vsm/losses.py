"""``VSMCriterion``: the VSM training loss, one method per named term, weights in a dict.

Terms (names as in :data:`search.vsm.config.LOSS_TERMS`; total = sum of weight x term):

- ``lm``: cross-entropy of the reply tokens (the ``<LOC>`` reply), teacher-forced.
- ``heatmap_bce`` / ``heatmap_dice``: per-pixel BCE and soft Dice of the heatmap logits against the
  target mask / box rasterised at heatmap resolution (all zero when the target is absent).
- ``heatmap_iou``: MSE of the mask decoder's quality prediction against the IoU of the
  thresholded heatmap (logit > 0) with the target mask (1 when both are empty).
- ``box_focal`` / ``box_l1`` / ``box_giou``: the DETR set loss. Queries are matched one-to-one to
  the ground-truth boxes by ultralytics' ``HungarianMatcher``; the matched queries are positives of
  a sigmoid focal loss (ultralytics ``FocalLoss``), every other query is "no object", and matched
  boxes get L1 + GIoU (ultralytics ``bbox_iou``). A patch without the target has no ground truth,
  so all its queries are negatives: the box score means "the target is here, in this box".
  Normalisation follows ultralytics' ``DETRLoss`` (per matched box), checked by a parity test.
- ``box_presence``: plain BCE on the two scores the search compares *across* patches: the matched
  candidate of a row with the target (towards 1) and the best-scoring candidate that misses every
  ground-truth box (``presence_miss_iou``; all candidates when the target is absent; towards 0).
  The focal term ranks candidates within a patch but, with ~g*g negatives per positive, keeps every
  score low, so a patch holding the target and one holding a near miss score alike; this term
  makes "best score > 0.5" mean "the target is in this patch", the search's stop rule.

Per-sample valid flags say a head gets *no supervision* on a sample (e.g. a context prompt has no
box target); they are not how absence is expressed (absence = valid with an empty target).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from search.vsm.config import LOSS_TERMS, VSMLossConfig

if TYPE_CHECKING:
    from search.vsm.model import VSMOutput

# ultralytics (matcher, focal loss, box IoU) must never pip-install a package at run time
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_OFFLINE", "1")

Matches = list[tuple[torch.Tensor, torch.Tensor]]
"""Per valid row: (query indices, indices into the concatenated ground-truth boxes)."""


@dataclass
class VSMTargets:
    """Ground truth of a batch of B prompt rows.

    Attributes:
        heatmaps: (B, H', W') float in [0, 1] at the heatmap decoder's resolution, over the square
            model input (the target's mask or box rasterised; zeros when absent).
        boxes: B tensors (n_i, 4) float ``cxcywh`` in [0, 1] of the model input; (0, 4) = absent.
        heatmap_valid: (B,) bool, rows whose heatmap is supervised; None = all.
        boxes_valid: (B,) bool, rows whose boxes are supervised; None = all.
    """

    heatmaps: torch.Tensor
    boxes: list[torch.Tensor]
    heatmap_valid: torch.Tensor | None = None
    boxes_valid: torch.Tensor | None = None
    attributes: torch.Tensor | None = None
    """(B, A, g, g) int64 class maps of the auxiliary attribute loss (-100 = ignored), or None."""

    def __post_init__(self) -> None:
        b = self.heatmaps.shape[0]
        if self.heatmaps.ndim != 3 or len(self.boxes) != b:
            raise ValueError(f"expected heatmaps (B, H, W) and B box tensors, found {tuple(self.heatmaps.shape)} "
                             f"and {len(self.boxes)}")
        for i, bx in enumerate(self.boxes):
            if bx.ndim != 2 or bx.shape[-1] != 4:
                raise ValueError(f"boxes[{i}]: expected (n, 4) cxcywh, found {tuple(bx.shape)}")
        for name in ("heatmap_valid", "boxes_valid"):
            flags = getattr(self, name)
            if flags is not None and tuple(flags.shape) != (b,):
                raise ValueError(f"{name}: expected shape ({b},), found {tuple(flags.shape)}")

    def rows(self, flags: torch.Tensor | None) -> torch.Tensor:
        """Indices of the rows selected by ``flags`` (all rows when None)."""
        n = self.heatmaps.shape[0]
        if flags is None:
            return torch.arange(n, device=self.heatmaps.device)
        return flags.to(self.heatmaps.device).bool().nonzero().flatten()


class VSMCriterion:
    """The weighted VSM loss. ``criterion(out, targets)`` -> ``{"total": ..., term: value}``.

    Terms with weight 0 are not computed. Returned terms are unweighted scalars; ``total`` is the
    weighted sum (the one to back-propagate).
    """

    def __init__(self, cfg: VSMLossConfig | None = None) -> None:
        from ultralytics.models.utils.ops import HungarianMatcher
        from ultralytics.utils.loss import FocalLoss

        self.cfg = cfg or VSMLossConfig()
        self.weights: dict[str, float] = dict(self.cfg.weights)
        self.matcher = HungarianMatcher(cost_gain=dict(self.cfg.match_costs), use_fl=True,
                                        alpha=self.cfg.focal_alpha, gamma=self.cfg.focal_gamma)
        self.focal = FocalLoss(gamma=self.cfg.focal_gamma, alpha=self.cfg.focal_alpha)

    def __call__(self, out: "VSMOutput", targets: VSMTargets) -> dict[str, torch.Tensor]:
        if out.heatmap.shape != targets.heatmaps.shape:
            raise ValueError(f"heatmap targets must be at the decoder's resolution: logits "
                             f"{tuple(out.heatmap.shape)}, targets {tuple(targets.heatmaps.shape)}")
        terms: dict[str, torch.Tensor] = {}
        matches = None
        for name in LOSS_TERMS:
            if self.weights[name] <= 0:
                continue
            if name.startswith("box_"):
                matches = self.match(out, targets) if matches is None else matches
                terms[name] = getattr(self, f"loss_{name}")(out, targets, matches)
            else:
                terms[name] = getattr(self, f"loss_{name}")(out, targets)
        total = sum((self.weights[k] * v for k, v in terms.items()), out.heatmap.new_zeros(()))
        return {"total": total, **terms}

    # ---- language model --------------------------------------------------------------------------
    def loss_lm(self, out: "VSMOutput", targets: VSMTargets) -> torch.Tensor:
        """Mean cross-entropy over the labelled reply tokens (0 when the batch has none)."""
        if out.lm_logits is None or out.lm_targets is None or out.lm_targets.numel() == 0:
            return out.heatmap.sum() * 0.0
        return F.cross_entropy(out.lm_logits.float(), out.lm_targets)

    # ---- auxiliary attributes ----------------------------------------------------------------------
    def loss_attributes(self, out: "VSMOutput", targets: VSMTargets) -> torch.Tensor:
        """Cross-entropy of the per-cell attribute logits, mean over the A channels (0 without them).

        ``out.attributes`` (B, sum(classes), g, g) is split by ``out.attribute_classes``; targets
        ``(B, A, g, g)``; cells labelled -100 are ignored."""
        if out.attributes is None or targets.attributes is None:
            return out.heatmap.sum() * 0.0
        labels = targets.attributes.to(out.attributes.device)
        logits = out.attributes.float().split(list(out.attribute_classes), dim=1)
        return attribute_cross_entropy(logits, labels, balanced=True)

    # ---- heatmap ---------------------------------------------------------------------------------
    def loss_heatmap_bce(self, out: "VSMOutput", targets: VSMTargets) -> torch.Tensor:
        """Per-pixel BCE with logits, mean over pixels and supervised rows."""
        rows = targets.rows(targets.heatmap_valid)
        if rows.numel() == 0:
            return out.heatmap.sum() * 0.0
        logits, gt = out.heatmap[rows], targets.heatmaps[rows].to(out.heatmap)
        return F.binary_cross_entropy_with_logits(logits, gt)

    def loss_heatmap_dice(self, out: "VSMOutput", targets: VSMTargets) -> torch.Tensor:
        """``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)`` per row (p = sigmoid), mean over rows."""
        rows = targets.rows(targets.heatmap_valid)
        if rows.numel() == 0:
            return out.heatmap.sum() * 0.0
        p = out.heatmap[rows].sigmoid().flatten(1)  # (b, H'W')
        t = targets.heatmaps[rows].to(p).flatten(1)
        s = self.cfg.dice_smooth
        dice = (2 * (p * t).sum(1) + s) / (p.sum(1) + t.sum(1) + s)
        return (1 - dice).mean()

    def loss_heatmap_iou(self, out: "VSMOutput", targets: VSMTargets) -> torch.Tensor:
        """MSE of the quality prediction against the IoU of ``heatmap > 0`` with ``target > 0.5``."""
        rows = targets.rows(targets.heatmap_valid)
        if rows.numel() == 0:
            return out.quality.sum() * 0.0
        with torch.no_grad():
            pred = (out.heatmap[rows] > 0).flatten(1)
            gt = (targets.heatmaps[rows] > 0.5).flatten(1)
            inter = (pred & gt).sum(1).float()
            union = (pred | gt).sum(1).float()
            iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        return F.mse_loss(out.quality[rows].float(), iou)

    # ---- boxes -----------------------------------------------------------------------------------
    def match(self, out: "VSMOutput", targets: VSMTargets) -> Matches:
        """Hungarian matching of the supervised rows' queries to their ground-truth boxes.

        Returns one ``(query_idx, gt_idx)`` pair of int64 tensors per supervised row (in the order
        of ``targets.rows(targets.boxes_valid)``); ``gt_idx`` indexes the concatenation of those
        rows' boxes. Rows without ground truth get empty tensors.
        """
        rows = targets.rows(targets.boxes_valid).tolist()
        if not rows:
            return []
        dev = out.boxes.device
        gt = [targets.boxes[r].to(dev, torch.float32) for r in rows]
        groups = [len(g) for g in gt]
        gt_boxes = torch.cat(gt) if sum(groups) else out.boxes.new_zeros((0, 4))
        gt_cls = torch.zeros(len(gt_boxes), dtype=torch.long, device=dev)
        indices = self.matcher(out.boxes[rows], out.box_logits[rows].unsqueeze(-1), gt_boxes, gt_cls, groups)
        return [(q.to(dev), g.to(dev)) for q, g in indices]

    def _matched(self, out: "VSMOutput", targets: VSMTargets,
                 matches: Matches) -> tuple[torch.Tensor, torch.Tensor]:
        """(pred boxes (N, 4), gt boxes (N, 4)) of the N matched pairs."""
        rows = targets.rows(targets.boxes_valid)
        dev = out.boxes.device
        gt_all = [targets.boxes[r].to(dev, torch.float32) for r in rows.tolist()]
        gt_all = torch.cat(gt_all) if gt_all else out.boxes.new_zeros((0, 4))
        if not matches or sum(len(q) for q, _ in matches) == 0:
            empty = out.boxes.new_zeros((0, 4))
            return empty, empty
        batch_idx = torch.cat([torch.full_like(q, int(r)) for (q, _), r in zip(matches, rows.tolist())])
        query_idx = torch.cat([q for q, _ in matches])
        gt_idx = torch.cat([g for _, g in matches])
        return out.boxes[batch_idx, query_idx], gt_all[gt_idx]

    def loss_box_focal(self, out: "VSMOutput", targets: VSMTargets, matches: Matches) -> torch.Tensor:
        """Sigmoid focal loss over all queries of the supervised rows (matched = 1, others = 0),
        summed and divided by the number of matched boxes (at least 1)."""
        rows = targets.rows(targets.boxes_valid)
        if rows.numel() == 0:
            return out.box_logits.sum() * 0.0
        logits = out.box_logits[rows]  # (b, Q)
        label = torch.zeros_like(logits)
        for k, (q, _) in enumerate(matches):
            label[k, q] = 1.0
        n_gt = max(int(sum(len(q) for q, _ in matches)), 1)
        nq = logits.shape[1]
        # FocalLoss returns the per-row mean over queries summed over rows and classes.
        return self.focal(logits.unsqueeze(-1), label.unsqueeze(-1)) * nq / n_gt

    def loss_box_presence(self, out: "VSMOutput", targets: VSMTargets, matches: Matches) -> torch.Tensor:
        """Mean of the BCE of the matched candidates' logits against 1 (rows with the target) and
        the BCE of each supervised row's best missing candidate's logit against 0."""
        from ultralytics.utils.metrics import bbox_iou

        rows = targets.rows(targets.boxes_valid)
        if rows.numel() == 0:
            return out.box_logits.sum() * 0.0
        logits = out.box_logits[rows].float()  # (b, Q)
        hit_logits, miss_logits = [], []
        for k, (r, (q, _)) in enumerate(zip(rows.tolist(), matches)):
            gt = targets.boxes[r].to(out.boxes.device, torch.float32)
            miss = torch.ones_like(logits[k], dtype=torch.bool)
            if len(gt):
                with torch.no_grad():
                    iou = torch.stack([bbox_iou(out.boxes[r].float(), g.unsqueeze(0), xywh=True).squeeze(-1)
                                       for g in gt])  # (n_gt, Q)
                miss = (iou < self.cfg.presence_miss_iou).all(0)
                hit_logits.append(logits[k, q])
            if bool(miss.any()):
                miss_logits.append(logits[k][miss].max().unsqueeze(0))
        parts = []
        if hit_logits:
            hit = torch.cat(hit_logits)
            parts.append(F.binary_cross_entropy_with_logits(hit, torch.ones_like(hit)))
        if miss_logits:
            miss_best = torch.cat(miss_logits)
            parts.append(F.binary_cross_entropy_with_logits(miss_best, torch.zeros_like(miss_best)))
        return torch.stack(parts).mean() if parts else out.box_logits.sum() * 0.0

    def loss_box_l1(self, out: "VSMOutput", targets: VSMTargets, matches: Matches) -> torch.Tensor:
        """L1 distance of matched ``cxcywh`` boxes, summed over coordinates, mean over boxes."""
        pred, gt = self._matched(out, targets, matches)
        if len(gt) == 0:
            return out.boxes.sum() * 0.0
        return F.l1_loss(pred, gt, reduction="sum") / len(gt)

    def loss_box_giou(self, out: "VSMOutput", targets: VSMTargets, matches: Matches) -> torch.Tensor:
        """``1 - GIoU`` of matched boxes, mean over boxes."""
        from ultralytics.utils.metrics import bbox_iou

        pred, gt = self._matched(out, targets, matches)
        if len(gt) == 0:
            return out.boxes.sum() * 0.0
        return (1.0 - bbox_iou(pred, gt, xywh=True, GIoU=True)).sum() / len(gt)


def attribute_cross_entropy(logits: "Sequence[torch.Tensor]", labels: torch.Tensor, balanced: bool) -> torch.Tensor:
    """Mean over channels of the per-cell cross-entropy of attribute maps.

    Args:
        logits: one (N, C_a, g, g) tensor per channel a.
        labels: (N, A, g, g) int64; 0 = background, -100 = ignored.
        balanced: average the object cells (label > 0) and the background cells separately and take
            the mean of the two, so the few object cells of a patch are not drowned by its background.
    """
    if len(logits) != labels.shape[1]:
        raise ValueError(f"{len(logits)} attribute heads but {labels.shape[1]} label channels")
    terms = []
    for c, lg in enumerate(logits):
        lab = labels[:, c]
        if not bool((lab != -100).any()):
            continue
        if not balanced:
            terms.append(F.cross_entropy(lg, lab, ignore_index=-100))
            continue
        ce = F.cross_entropy(lg, lab.clamp_min(0), reduction="none")  # (N, g, g)
        parts = [ce[m].mean() for m in (lab > 0, lab == 0) if bool(m.any())]
        terms.append(torch.stack(parts).mean())
    return torch.stack(terms).mean() if terms else labels.new_zeros((), dtype=torch.float32)


def attribute_cell_hits(logits: "Sequence[torch.Tensor]", labels: torch.Tensor) -> tuple[list[int], list[int]]:
    """Per channel, ``(object cells whose argmax class is right, object cells)``; shapes as
    :func:`attribute_cross_entropy` (object cells: label > 0). Sum over batches, then divide."""
    hits, cells = [], []
    with torch.no_grad():
        for c, lg in enumerate(logits):
            lab = labels[:, c]
            obj = lab > 0
            hits.append(int((lg.argmax(1)[obj] == lab[obj]).sum()))
            cells.append(int(obj.sum()))
    return hits, cells
