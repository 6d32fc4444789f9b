"""Priorities of the V* frontier: heatmap evidence from a node's ancestors, combined by a scorer.

When a node is expanded, each child gets a priority

    scorer.combine([e_0, e_1, ..., e_parent]) + cfg.detection_priority_weight * child_best_score

where ``e_l`` is the *evidence* for the child's box under the heatmap of its level-``l`` ancestor
(root = level 0): the area-weighted mean of ``sigmoid(logits)`` over the part of that ancestor's
heatmap the child's box covers (:func:`heatmap_evidence`). The heatmap of an ancestor is the one
that guided its expansion (its target heatmap, or the contextual cue that replaced a weak one).

Scorers are small objects registered by name (``SearchConfig.priority_scorer``); add one with
:func:`register_scorer`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from search.config import SearchConfig
from seal.core.geometry import Frame
from seal.core.errors import ConfigError

Box = tuple[float, float, float, float]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function, float64."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


def _cell_weights(lo: float, hi: float, n: int) -> np.ndarray:
    """``(n,)`` length of ``[lo, hi]`` inside each unit cell ``[i, i + 1]`` of a grid of ``n`` cells."""
    edges = np.arange(n + 1, dtype=np.float64)
    return np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)


def heatmap_evidence(heatmap: np.ndarray, region: Box, box: Box) -> float:
    """Mean ``sigmoid`` of a heatmap over the part of ``box`` it covers, weighted by cell area.

    Args:
        heatmap: ``(h, w)`` logits stretched over ``region`` (row 0 = region top), any ``h, w >= 1``.
        region: ``xyxy`` full-image pixels the heatmap describes.
        box: ``xyxy`` full-image pixels; only its intersection with ``region`` counts, and a cell
            partly covered counts in proportion to the covered area.

    Returns:
        A float in ``[0, 1]``; ``0.0`` when ``box`` does not intersect ``region``.
    """
    h, w = heatmap.shape
    frame = Frame(tuple(float(v) for v in region), w, h, letterbox=False)  # type: ignore[arg-type]
    cx1, cy1, cx2, cy2 = frame.full_to_input_xyxy(box)  # box in heatmap-cell units
    wx, wy = _cell_weights(cx1, cx2, w), _cell_weights(cy1, cy2, h)
    total = wx.sum() * wy.sum()
    if total <= 0:
        return 0.0
    return float(wy @ sigmoid(heatmap) @ wx / total)


def ancestor_evidence(box: Box, guides: Sequence[tuple[np.ndarray, Box]]) -> list[float]:
    """Evidence for ``box`` under each ancestor's guiding heatmap.

    ``guides[l] = (heatmap, region)`` of the level-``l`` ancestor (root first); returns one value per
    ancestor, in the same order.
    """
    return [heatmap_evidence(heat, region, box) for heat, region in guides]


class PriorityScorer:
    """Combines per-ancestor evidence into a priority. Subclasses implement :meth:`combine`."""

    name = "base"

    def __init__(self, cfg: SearchConfig) -> None:
        self.detection_weight = cfg.detection_priority_weight

    def combine(self, evidence: Sequence[float]) -> float:
        """``evidence[l]`` is the evidence under the level-``l`` ancestor's heatmap (root = 0)."""
        raise NotImplementedError

    def priority(self, evidence: Sequence[float], detection_score: float) -> float:
        """Priority of a node: combined evidence plus the weighted best detection score of the node."""
        return float(self.combine(evidence)) + self.detection_weight * float(detection_score)


SCORERS: dict[str, Callable[[SearchConfig], PriorityScorer]] = {}
"""Registry: ``SearchConfig.priority_scorer`` name -> factory ``(cfg) -> PriorityScorer``."""


def register_scorer(name: str) -> Callable[[type[PriorityScorer]], type[PriorityScorer]]:
    """Class decorator adding a scorer to :data:`SCORERS` under ``name``."""

    def add(cls: type[PriorityScorer]) -> type[PriorityScorer]:
        cls.name = name
        SCORERS[name] = cls
        return cls

    return add


@register_scorer("ancestor_decay")
class AncestorDecay(PriorityScorer):
    """``sum_l e_l / base**l`` with ``base = cfg.level_weight_base``: coarse ancestors weigh most.

    This is the reference's weighting (1/4 per level); it is a sum, not a mean, as in the reference.
    """

    def __init__(self, cfg: SearchConfig) -> None:
        super().__init__(cfg)
        self.base = cfg.level_weight_base

    def combine(self, evidence: Sequence[float]) -> float:
        return float(sum(e / self.base**level for level, e in enumerate(evidence)))


@register_scorer("parent_only")
class ParentOnly(PriorityScorer):
    """Only the parent's heatmap counts (0 for the root, which has no parent)."""

    def combine(self, evidence: Sequence[float]) -> float:
        return float(evidence[-1]) if len(evidence) else 0.0


@register_scorer("max")
class MaxEvidence(PriorityScorer):
    """The strongest evidence any ancestor gave (0 for the root)."""

    def combine(self, evidence: Sequence[float]) -> float:
        return float(max(evidence)) if len(evidence) else 0.0


def make_scorer(cfg: SearchConfig) -> PriorityScorer:
    """The scorer named by ``cfg.priority_scorer``."""
    try:
        factory = SCORERS[cfg.priority_scorer]
    except KeyError:
        raise ConfigError(f"search.priority_scorer: expected one of {sorted(SCORERS)}, "
                          f"found {cfg.priority_scorer!r}") from None
    return factory(cfg)
