"""Priority scorers: how heatmap evidence from a node's ancestors becomes its priority.

Evidence for a child box under an ancestor's heatmap is the mean of ``sigmoid(logits)`` over the
heatmap cells the child covers. Scorers combine the list of evidence values (one per ancestor
level, root first) into one number; they are registered by name (``SearchConfig.priority_scorer``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from search.config import SearchConfig
from search.geometry import normalize_xyxy

Box = tuple[float, float, float, float]


def heatmap_evidence(heatmap: np.ndarray, region: Box, child: Box) -> float:
    """Mean sigmoid of the ``(h, w)`` logit ``heatmap`` (covering ``region``) over ``child``'s cells.

    Both boxes are full-image xyxy pixels; ``child`` should lie inside ``region`` (it is clipped).
    The cell range always holds at least one cell, whatever the heatmap resolution.
    """
    h, w = heatmap.shape
    rx1, ry1, rx2, ry2 = region
    rel = normalize_xyxy(np.array(child) - np.array([rx1, ry1, rx1, ry1]), rx2 - rx1, ry2 - ry1)
    rel = np.clip(rel, 0.0, 1.0)
    c0 = min(int(np.floor(rel[0] * w)), w - 1)
    r0 = min(int(np.floor(rel[1] * h)), h - 1)
    c1 = max(c0 + 1, int(np.ceil(rel[2] * w)))
    r1 = max(r0 + 1, int(np.ceil(rel[3] * h)))
    cells = heatmap[r0:r1, c0:c1].astype(np.float64)
    return float(np.mean(1.0 / (1.0 + np.exp(-cells))))


Scorer = Callable[[list[float], SearchConfig], float]


def ancestor_decay(evidence: list[float], cfg: SearchConfig) -> float:
    """Sum over ancestor levels l of evidence_l / base**l (the reference's 1/4^level weighting)."""
    return float(sum(e / cfg.level_weight_base ** level for level, e in enumerate(evidence)))


def parent_only(evidence: list[float], cfg: SearchConfig) -> float:
    """Only the parent's heatmap counts."""
    return float(evidence[-1]) if evidence else 0.0


def max_evidence(evidence: list[float], cfg: SearchConfig) -> float:
    """The strongest evidence any ancestor gave."""
    return float(max(evidence)) if evidence else 0.0


SCORERS: dict[str, Scorer] = {"ancestor_decay": ancestor_decay, "parent_only": parent_only, "max": max_evidence}


def get_scorer(name: str) -> Scorer:
    try:
        return SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown priority scorer {name!r}; known: {', '.join(SCORERS)}") from None
