"""``SearchResult``: what one target's search found and what it cost; ``InstanceSet`` for counting.

``found`` / ``fallback`` (chosen once, here):

- a **confident hit** (a visited node's best detection scored ``> confidence_high``): ``found=True``,
  ``fallback=False``, ``stop_reason="confident"`` (multi-instance mode: any confident instance;
  ``select: best``: the best of the hits compared, and the stop reason is a budget's or
  ``exhausted`` when one of those ended the comparison);
- the **anytime fallback**: no confident hit, but the best box of any visited node scored
  ``>= confidence_low``: ``found=True``, ``fallback=True``; the box is returned, flagged, as the
  reference V* did (it counted these as successes). Use :attr:`SearchResult.confident` to accept
  confident hits only;
- otherwise ``found=False``, ``box_xyxy=None``, ``instances=[]`` and ``score`` is the best score
  seen (below ``confidence_low``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seal.core.geometry import iou_xyxy
from search.trace import SearchTrace

Box = tuple[float, float, float, float]


@dataclass
class SearchResult:
    target: str
    strategy: str
    found: bool
    """True for a confident hit and for the anytime fallback (then ``fallback`` is True too)."""
    box_xyxy: Box | None
    """Full-image pixels, upright frame; None when not found."""
    score: float
    """Score of ``box_xyxy``; when not found, the best score seen (or 0.0)."""
    instances: list[tuple[Box, float]]
    """Multi-instance mode: every confident instance after NMS, best first; else ``[(box, score)]``
    when found, ``[]`` when not."""
    nodes_visited: int
    """Nodes popped and examined: the true search length, whether or not the target was found."""
    nodes_scored: int
    """Patches sent to the localizer's ``locate``."""
    model_calls: int
    """Localizer calls: each batched ``locate`` = 1, each ``suggest_region`` = 1."""
    seconds: float
    """Wall time of the whole search (including ``set_image`` when ``run_search`` called it)."""
    localizer_seconds: float
    """Wall time inside localizer calls (``set_image``, ``locate``, ``suggest_region``)."""
    stop_reason: str
    """``confident | exhausted | max_nodes | max_model_calls | deadline | instances_cap``."""
    trace: SearchTrace
    fallback: bool = False
    """The box came from the anytime fallback, not from a confident hit."""
    hit_check_score: float | None = None
    """The hit check's probability for ``box_xyxy``; None without a check, when it abstained or
    its budget was spent (:mod:`search.hit_check.rules`)."""
    hit_check_calls: int = 0
    """Boxes the hit check judged (one call each; not counted in ``model_calls``)."""
    hit_check_seconds: float = 0.0
    """Wall time inside hit-check calls."""
    hit_check_forwards: int = 0
    """Passes of the hit check's model (boxes read in one batch are one pass)."""
    answer_level: int | None = None
    """Level (root 0) of the visited node whose look gave ``box_xyxy`` (a zoom's box counts for the
    node that zoomed); None when nothing was found."""

    @property
    def confidence(self) -> float:
        """The probability that ``box_xyxy`` is the target: the hit check's probability when it judged
        the box (its crop matcher's reading is calibrated: ECE in docs/RESULTS.md), else the
        localizer's score; 0.0 when nothing was found."""
        if not self.found:
            return 0.0
        return float(self.hit_check_score) if self.hit_check_score is not None else float(self.score)

    @property
    def forwards(self) -> int:
        """Model forwards this search cost: each localizer call (one pass of its encoder over the new
        patches, its LM and its decoders, for a batch of regions) plus each pass of the hit check's
        model."""
        return self.model_calls + self.hit_check_forwards

    @property
    def confident(self) -> bool:
        """Found by a detection above ``confidence_high`` (not by the fallback)."""
        return self.found and not self.fallback

    @property
    def engine_seconds(self) -> float:
        """Time spent in the search itself, outside localizer calls."""
        return max(0.0, self.seconds - self.localizer_seconds)

    def to_json(self) -> dict:
        """The api.md keys plus ``fallback`` and the hit check's ``hit_check_score`` / ``hit_check_calls`` /
        ``hit_check_seconds``; boxes as lists (or null), rounded to 0.01 px."""
        return {
            "target": self.target,
            "strategy": self.strategy,
            "found": self.found,
            "fallback": self.fallback,
            "box_xyxy": _box_list(self.box_xyxy) if self.box_xyxy is not None else None,
            "score": round(float(self.score), 4),
            "instances": [{"box_xyxy": _box_list(b), "score": round(float(s), 4)} for b, s in self.instances],
            "nodes_visited": self.nodes_visited,
            "nodes_scored": self.nodes_scored,
            "model_calls": self.model_calls,
            "seconds": round(self.seconds, 4),
            "localizer_seconds": round(self.localizer_seconds, 4),
            "stop_reason": self.stop_reason,
            "hit_check_score": None if self.hit_check_score is None else round(float(self.hit_check_score), 4),
            "hit_check_calls": self.hit_check_calls,
            "hit_check_seconds": round(self.hit_check_seconds, 4),
            "hit_check_forwards": self.hit_check_forwards,
            "forwards": self.forwards,
            "answer_level": self.answer_level,
            "confidence": round(self.confidence, 4),
        }


def _box_list(box: Box) -> list[float]:
    return [round(float(v), 2) for v in box]


class InstanceSet:
    """Confident detections collected over a search, deduplicated by greedy NMS.

    :meth:`instances` keeps, best score first, every candidate whose IoU with each better kept one
    is ``<= nms_iou`` (equal scores: the earlier candidate wins).
    """

    def __init__(self, nms_iou: float) -> None:
        self.nms_iou = nms_iou
        self._boxes: list[Box] = []
        self._scores: list[float] = []

    def add(self, boxes_xyxy: np.ndarray, scores: np.ndarray, min_score: float) -> None:
        """Add the ``(K, 4)`` boxes whose ``(K,)`` score is ``> min_score``."""
        for box, score in zip(boxes_xyxy, scores):
            if score > min_score:
                self._boxes.append(tuple(float(v) for v in box))  # type: ignore[arg-type]
                self._scores.append(float(score))

    def instances(self) -> list[tuple[Box, float]]:
        order = sorted(range(len(self._scores)), key=lambda i: (-self._scores[i], i))
        kept: list[int] = []
        for i in order:
            if all(iou_xyxy(self._boxes[i], self._boxes[k]) <= self.nms_iou for k in kept):
                kept.append(i)
        return [(self._boxes[i], self._scores[i]) for i in kept]

    def __len__(self) -> int:
        return len(self.instances())
