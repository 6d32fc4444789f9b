"""Search-tree geometry: the split rule and the leaf rule (pure functions on xyxy boxes).

Boxes are ``(x1, y1, x2, y2)`` floats in full-image pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from search.config import SearchConfig

Box = tuple[float, float, float, float]


@dataclass
class Node:
    """One patch of the search tree."""

    node_id: int
    box: Box
    level: int
    parent: int  # -1 for the root
    priority: float = 0.0
    evidence: list[float] = field(default_factory=list)
    """Heatmap evidence for this patch seen at each ancestor level (index = ancestor level)."""
    detection_score: float = 0.0
    """Best detection score of this patch, once located."""
    located: bool = False


def leaf_side(width: float, height: float, cfg: SearchConfig) -> float:
    """Short side at or below which a patch is a leaf: max(ceil(min(W, H) / divisor), min_leaf_side)."""
    return max(math.ceil(min(width, height) / cfg.leaf_divisor), cfg.min_leaf_side)


def is_leaf(box: Box, leaf: float) -> bool:
    return min(box[2] - box[0], box[3] - box[1]) <= leaf


def split_box(box: Box, cfg: SearchConfig) -> list[Box]:
    """Children of ``box`` in reading order (row-major).

    2x2 when the patch is roughly square, 1x4 / 4x1 strips when its long/short ratio is at least
    ``cfg.split_aspect_ratio``. Each child is grown by ``cfg.overlap`` of its own size on every side
    and clamped to the parent, so objects on tile borders appear whole in some child.
    """
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if w >= cfg.split_aspect_ratio * h:
        cols, rows = 4, 1
    elif h >= cfg.split_aspect_ratio * w:
        cols, rows = 1, 4
    else:
        cols, rows = 2, 2
    cw, ch = w / cols, h / rows
    children = []
    for r in range(rows):
        for c in range(cols):
            cx1, cy1 = x1 + c * cw, y1 + r * ch
            cx2, cy2 = cx1 + cw, cy1 + ch
            ox, oy = cfg.overlap * cw, cfg.overlap * ch
            children.append((max(x1, cx1 - ox), max(y1, cy1 - oy), min(x2, cx2 + ox), min(y2, cy2 + oy)))
    return children
