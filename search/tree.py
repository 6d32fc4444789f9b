"""The search tree: its nodes, the split rule and the leaf rule.

All boxes are ``xyxy`` float tuples in full-image pixels (upright frame).

Every node has two boxes:

- its **tile**: its cell of a quadtree over the full image. The root's tile is the full image; a
  tile splits into 2x2 tiles, or into 1x4 / 4x1 strips when its long/short side ratio is at least
  ``cfg.split_aspect_ratio``. Tiles of one level partition their parent's tile exactly (no overlap),
  so the tree's shape (how many levels, which nodes are leaves) does not depend on ``cfg.overlap``.
- its **box**: the region the localizer looks at. It is the tile grown by ``cfg.overlap / 2`` of
  the tile's width (height) on the left and right (top and bottom), clamped to the parent's box.
  So the box is ``1 + overlap`` times the tile's size, two neighbouring children overlap by
  ``overlap`` of a tile's size, and an object lying on a tile border appears whole in some child.
  Children's boxes lie inside the parent's box and their union covers the parent's tile.

Leaf rule (the reference's): a node is a leaf when its tile's short side is
``<= max(ceil(min(W, H) / cfg.leaf_divisor), cfg.min_leaf_side)`` for the full ``W x H`` image.
A 2246 x 1582 image with the defaults gives leaf side 396, so the tree is 1 + 4 + 16 = 21 nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from search.config import SearchConfig
from search.localizer import Detection

Box = tuple[float, float, float, float]


@dataclass
class Node:
    """One patch of the search tree.

    ``ancestors`` are the ids of the nodes from the root down to the parent (empty for the root);
    ``ancestors[l]`` is the ancestor at level ``l`` unless the root's expansion jumped levels
    (``SearchConfig.jump_levels``), which have no nodes. ``detection`` is set once the node has been
    located (children are located in one batch when their parent is expanded).
    """

    node_id: int
    box: Box
    tile: Box
    level: int
    parent: int  # -1 for the root
    ancestors: tuple[int, ...]
    leaf: bool
    priority: float = 0.0
    detection: Detection | None = None

    @property
    def best_score(self) -> float:
        return self.detection.best_score if self.detection is not None else 0.0


TREE_FIELDS: tuple[str, ...] = ("split_aspect_ratio", "overlap", "leaf_divisor", "min_leaf_side")
"""The ``SearchConfig`` fields that shape the tree (its tiles and boxes); nothing else does."""


def leaf_side(width: float, height: float, cfg: SearchConfig) -> float:
    """Tile short side at or below which a node is a leaf, for a ``width x height`` image (pixels)."""
    return float(max(math.ceil(min(width, height) / cfg.leaf_divisor), cfg.min_leaf_side))


def is_leaf(tile: Box, leaf: float) -> bool:
    """Whether a node with this tile is a leaf, given :func:`leaf_side`'s ``leaf``."""
    return min(tile[2] - tile[0], tile[3] - tile[1]) <= leaf


def split_grid(tile: Box, cfg: SearchConfig) -> tuple[int, int]:
    """``(cols, rows)`` of the split: ``(4, 1)`` for a wide strip-shaped tile (width >= ratio x
    height), ``(1, 4)`` for a tall one, else ``(2, 2)``."""
    w, h = tile[2] - tile[0], tile[3] - tile[1]
    if w >= cfg.split_aspect_ratio * h:
        return 4, 1
    if h >= cfg.split_aspect_ratio * w:
        return 1, 4
    return 2, 2


def split_tile(tile: Box, cfg: SearchConfig) -> list[Box]:
    """The children's tiles, in reading order (row-major); they partition ``tile`` exactly."""
    x1, y1, x2, y2 = tile
    cols, rows = split_grid(tile, cfg)
    xs = [x1 + (x2 - x1) * c / cols for c in range(cols)] + [x2]  # exact end points, no drift
    ys = [y1 + (y2 - y1) * r / rows for r in range(rows)] + [y2]
    return [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(rows) for c in range(cols)]


def grow_tile(tile: Box, overlap: float, bounds: Box) -> Box:
    """``tile`` grown by ``overlap / 2`` of its width / height on each side, clamped to ``bounds``."""
    x1, y1, x2, y2 = tile
    dx, dy = overlap / 2 * (x2 - x1), overlap / 2 * (y2 - y1)
    return (max(bounds[0], x1 - dx), max(bounds[1], y1 - dy), min(bounds[2], x2 + dx), min(bounds[3], y2 + dy))


def split(tile: Box, box: Box, cfg: SearchConfig) -> list[tuple[Box, Box]]:
    """Children of the node with ``tile`` and ``box``: ``(child_tile, child_box)`` pairs in reading order."""
    return [(t, grow_tile(t, cfg.overlap, box)) for t in split_tile(tile, cfg)]


def descend(tile: Box, box: Box, cfg: SearchConfig, leaf: float, levels: int = 1) -> list[tuple[Box, Box, int]]:
    """The nodes ``levels`` levels below the node with ``tile`` and ``box``: ``(tile, box, depth)``
    triples (``depth`` 1..``levels`` below it) in reading order, a leaf met above that depth taken as
    it is (``leaf``: :func:`leaf_side`). ``levels=1`` gives :func:`split`'s children."""
    out = []
    for child_tile, child_box in split(tile, box, cfg):
        if levels <= 1 or is_leaf(child_tile, leaf):
            out.append((child_tile, child_box, 1))
        else:
            out += [(t, b, d + 1) for t, b, d in descend(child_tile, child_box, cfg, leaf, levels - 1)]
    return out


def tree_boxes(width: float, height: float, cfg: SearchConfig, max_level: int = 2) -> list[tuple[int, Box]]:
    """``(level, box)`` of every node of the search tree down to ``max_level`` (root = level 0), level
    by level in reading order, for a ``width x height`` image; leaves are not split further."""
    leaf = leaf_side(width, height, cfg)
    full = (0.0, 0.0, float(width), float(height))
    out = [(0, full)]
    frontier = [(full, full)]
    for level in range(1, max_level + 1):
        nxt = []
        for tile, box in frontier:
            if is_leaf(tile, leaf):
                continue
            for child_tile, child_box in split(tile, box, cfg):
                out.append((level, child_box))
                nxt.append((child_tile, child_box))
        frontier = nxt
    return out
