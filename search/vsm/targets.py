"""Training targets of one patch, from full-image annotations (numpy + PIL, no torch).

A patch is a region of the full image resampled to the square model input by a
:class:`seal.core.geometry.Frame` (the same frame :meth:`ImageSource.crop_resized` returns), so the
targets live in the model-input frame the decoders predict in:

- :func:`box_targets_cxcywh`: the target's boxes that are visible in the region, as ``cxcywh``
  normalised to [0, 1] of the model input (the box decoder's format);
- :func:`heatmap_target`: the target's polygons (or boxes) rasterised at the heatmap decoder's
  resolution over the whole model input (letterbox padding stays 0).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from seal.core.geometry import (
    BoxLike,
    Frame,
    area_xyxy,
    clip_xyxy,
    intersection_fraction_xyxy,
    normalize_xyxy,
    xyxy_to_cxcywh,
)

SUPERSAMPLE = 8
"""Shapes are drawn at this many sub-pixels per heatmap cell side, then cells >= half covered count."""


def _clip_to_region(frame: Frame, boxes_xyxy: np.ndarray) -> np.ndarray:
    """Full-image boxes clipped to the frame's region (still full-image pixels)."""
    local = frame.full_to_region_xyxy(boxes_xyxy)
    return frame.region_to_full_xyxy(clip_xyxy(local, frame.region_w, frame.region_h))


def box_targets_cxcywh(frame: Frame, boxes_xyxy: BoxLike | Sequence[BoxLike],
                       min_visible: float = 0.5) -> np.ndarray:
    """Ground-truth boxes of one target for the box decoder.

    Args:
        frame: region -> model input mapping of the patch.
        boxes_xyxy: (N, 4) full-image ``xyxy`` pixels of the target's instances (N may be 0).
        min_visible: an instance counts as present when at least this fraction of its box lies
            inside the region; its box is then clipped to the region.

    Returns:
        (n, 4) float32 ``cxcywh`` in [0, 1] of the model input; (0, 4) when the target is absent.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    keep = [b for b in boxes if area_xyxy(b) > 0 and intersection_fraction_xyxy(b, frame.region_xyxy) >= min_visible]
    if not keep:
        return np.zeros((0, 4), dtype=np.float32)
    inside = frame.full_to_input_xyxy(_clip_to_region(frame, np.stack(keep)))
    return xyxy_to_cxcywh(normalize_xyxy(inside, frame.input_w, frame.input_h)).astype(np.float32)


def heatmap_target(frame: Frame, size_hw: tuple[int, int], boxes_xyxy: BoxLike | Sequence[BoxLike] = (),
                   polygons: Sequence[Sequence[Sequence[float]]] = ()) -> np.ndarray:
    """The target's mask at heatmap resolution over the model input.

    Args:
        frame: region -> model input mapping of the patch.
        size_hw: ``(H', W')`` of the heatmap decoder's output.
        boxes_xyxy: (N, 4) full-image boxes, drawn filled (use for instances without a polygon).
        polygons: full-image ``[[x, y], ...]`` outlines, drawn filled.

    Returns:
        (H', W') float32 in {0, 1}: 1 where the shapes cover at least half of a cell (drawn at
        :data:`SUPERSAMPLE` x resolution), zero outside the region's content area (letterbox padding);
        an instance inside the region too small to cover a heatmap cell still marks the cell
        holding its centre.
    """
    h, w = size_hw
    k = SUPERSAMPLE
    sx, sy = w / frame.input_w, h / frame.input_h
    # The region's content area in heatmap pixels: nothing outside it is visible in the patch.
    cx0, cy0, cx1, cy1 = frame.full_to_input_xyxy(frame.region_xyxy) * np.array([sx, sy, sx, sy])
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    content = ((xs > cx0) & (xs < cx1) & (ys > cy0) & (ys < cy1)).astype(np.float32)
    shapes: list[np.ndarray] = []  # each (n, 2) full-image points
    for x0, y0, x1, y1 in np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4):
        shapes.append(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))
    shapes += [np.asarray(poly, dtype=np.float64).reshape(-1, 2) for poly in polygons]
    mask = np.zeros((h, w), dtype=np.float32)
    for pts in shapes:
        if len(pts) < 3:
            continue
        as_boxes = np.concatenate([pts, pts], axis=1)  # points as degenerate xyxy boxes
        local = frame.full_to_input_xyxy(as_boxes)[:, :2] * np.array([sx, sy])  # (n, 2) heatmap px
        canvas = Image.new("L", (w * k, h * k), 0)
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in local * k], fill=1)
        coverage = np.asarray(canvas, dtype=np.float32).reshape(h, k, w, k).mean(axis=(1, 3))
        drawn = (coverage >= 0.5).astype(np.float32)
        if not drawn.any():
            cx, cy = local.mean(axis=0)
            if cx0 <= cx < cx1 and cy0 <= cy < cy1:
                drawn[min(int(cy), h - 1), min(int(cx), w - 1)] = 1.0
        mask = np.maximum(mask, drawn * content)
    return mask
