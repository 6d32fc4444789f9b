"""Box geometry: the one place box formats are converted and frames are mapped.

Box formats are in every function name:
- ``xyxy``: ``(x1, y1, x2, y2)`` corners, x right, y down, pixels unless said otherwise.
- ``xywh``: ``(x, y, w, h)`` top-left corner + size (V*Bench's ``bbox`` field).
- ``cxcywh``: ``(cx, cy, w, h)`` centre + size (DETR-style heads).

Arrays are ``float64`` of shape ``(4,)`` or ``(N, 4)``; functions accept either and return the same
rank. Frames: the *full* frame is the upright full image in pixels; a :class:`Frame` maps a
rectangular region of it (a search patch) to the *local* frame of a model input of a given size,
optionally letterboxed (aspect kept, padded) or stretched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BoxLike = Sequence[float] | np.ndarray


def _arr(boxes: BoxLike) -> np.ndarray:
    a = np.asarray(boxes, dtype=np.float64)
    if a.shape[-1] != 4 or a.ndim not in (1, 2):
        raise ValueError(f"expected boxes of shape (4,) or (N, 4), got {a.shape}")
    return a


def xywh_to_xyxy(boxes: BoxLike) -> np.ndarray:
    b = _arr(boxes).copy()
    b[..., 2] = b[..., 0] + b[..., 2]
    b[..., 3] = b[..., 1] + b[..., 3]
    return b


def xyxy_to_xywh(boxes: BoxLike) -> np.ndarray:
    b = _arr(boxes).copy()
    b[..., 2] = b[..., 2] - b[..., 0]
    b[..., 3] = b[..., 3] - b[..., 1]
    return b


def cxcywh_to_xyxy(boxes: BoxLike) -> np.ndarray:
    b = _arr(boxes)
    half_w, half_h = b[..., 2] / 2, b[..., 3] / 2
    return np.stack([b[..., 0] - half_w, b[..., 1] - half_h, b[..., 0] + half_w, b[..., 1] + half_h], axis=-1)


def xyxy_to_cxcywh(boxes: BoxLike) -> np.ndarray:
    b = _arr(boxes)
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return np.stack([b[..., 0] + w / 2, b[..., 1] + h / 2, w, h], axis=-1)


def area_xyxy(boxes: BoxLike) -> np.ndarray | float:
    b = _arr(boxes)
    a = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    return float(a) if a.ndim == 0 else a


def clip_xyxy(boxes: BoxLike, width: float, height: float) -> np.ndarray:
    """Clip boxes to the image ``[0, width] x [0, height]``."""
    b = _arr(boxes).copy()
    b[..., [0, 2]] = np.clip(b[..., [0, 2]], 0, width)
    b[..., [1, 3]] = np.clip(b[..., [1, 3]], 0, height)
    return b


def iou_xyxy(a: BoxLike, b: BoxLike) -> np.ndarray | float:
    """Pairwise IoU. ``(4,), (4,)`` -> float; ``(N, 4), (M, 4)`` -> ``(N, M)``."""
    a_, b_ = _arr(a), _arr(b)
    scalar = a_.ndim == 1 and b_.ndim == 1
    a2, b2 = np.atleast_2d(a_), np.atleast_2d(b_)
    lt = np.maximum(a2[:, None, :2], b2[None, :, :2])  # (N, M, 2)
    rb = np.minimum(a2[:, None, 2:], b2[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_xyxy(a2)[:, None] + area_xyxy(b2)[None, :] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return float(iou[0, 0]) if scalar else iou


def intersection_fraction_xyxy(box: BoxLike, region: BoxLike) -> float:
    """Fraction of ``box``'s area that lies inside ``region`` (1.0 = fully inside)."""
    bx, rg = _arr(box), _arr(region)
    w = max(0.0, min(bx[2], rg[2]) - max(bx[0], rg[0]))
    h = max(0.0, min(bx[3], rg[3]) - max(bx[1], rg[1]))
    a = area_xyxy(bx)
    return float(w * h / a) if a > 0 else 0.0


def square_window_xyxy(cx: float, cy: float, side: float, width: float,
                       height: float) -> tuple[float, float, float, float]:
    """The square of ``side`` (at most the image's short side) centred as near ``(cx, cy)`` as a
    ``width x height`` image allows, ``xyxy``."""
    side = min(side, width, height)
    x0 = min(max(cx - side / 2, 0.0), width - side)
    y0 = min(max(cy - side / 2, 0.0), height - side)
    return (x0, y0, x0 + side, y0 + side)


def box_window_xyxy(box: BoxLike, min_side: float, width: float, height: float) -> tuple[float, float, float, float]:
    """The square window centred on ``box`` (``xyxy``) for a closer look: ``min_side``, or twice the
    box's long side when that is larger, fitted into a ``width x height`` image."""
    x1, y1, x2, y2 = (float(v) for v in _arr(box).reshape(4))
    side = max(min_side, 2.0 * max(x2 - x1, y2 - y1))
    return square_window_xyxy((x1 + x2) / 2, (y1 + y2) / 2, side, width, height)


def jitter_xyxy(box: BoxLike, rng: np.random.Generator, fraction: float, width: float,
                height: float) -> tuple[float, float, float, float]:
    """``box`` with each edge moved by up to ``fraction`` of the box's width / height (uniform, one draw
    of 4 from ``rng``), kept inside the ``width x height`` image and at least 1 px wide, as a
    localizer's boxes are off the truth."""
    x1, y1, x2, y2 = (float(v) for v in _arr(box).reshape(4))
    dx1, dy1, dx2, dy2 = rng.uniform(-fraction, fraction, 4) * np.array([x2 - x1, y2 - y1] * 2)
    nx1, ny1 = min(max(x1 + dx1, 0.0), width - 1.0), min(max(y1 + dy1, 0.0), height - 1.0)
    return nx1, ny1, min(max(x2 + dx2, nx1 + 1.0), float(width)), min(max(y2 + dy2, ny1 + 1.0), float(height))


def normalize_xyxy(boxes: BoxLike, width: float, height: float) -> np.ndarray:
    """Pixels -> ``[0, 1]`` coordinates of a ``width x height`` frame."""
    return _arr(boxes) / np.array([width, height, width, height], dtype=np.float64)


def denormalize_xyxy(boxes: BoxLike, width: float, height: float) -> np.ndarray:
    return _arr(boxes) * np.array([width, height, width, height], dtype=np.float64)


@dataclass(frozen=True)
class Frame:
    """Maps a region of the full image onto a model input of ``input_w x input_h`` pixels.

    ``region_xyxy`` is in full-image pixels. With ``letterbox=True`` the region is scaled by one
    factor (aspect kept) and centred with padding; otherwise it is stretched on each axis.
    """

    region_xyxy: tuple[float, float, float, float]
    input_w: int
    input_h: int
    letterbox: bool = True

    @property
    def region_w(self) -> float:
        return self.region_xyxy[2] - self.region_xyxy[0]

    @property
    def region_h(self) -> float:
        return self.region_xyxy[3] - self.region_xyxy[1]

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Input pixels per full-image pixel, on x and y."""
        sx, sy = self.input_w / self.region_w, self.input_h / self.region_h
        if self.letterbox:
            s = min(sx, sy)
            return s, s
        return sx, sy

    @property
    def pad_xy(self) -> tuple[float, float]:
        """Padding (input pixels) on the left and on the top of the scaled region."""
        sx, sy = self.scale_xy
        return (self.input_w - self.region_w * sx) / 2, (self.input_h - self.region_h * sy) / 2

    def _affine(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(offset, scale, pad)`` as xyxy vectors: input = (full - offset) * scale + pad."""
        sx, sy = self.scale_xy
        px, py = self.pad_xy
        x0, y0 = self.region_xyxy[0], self.region_xyxy[1]
        return np.array([x0, y0, x0, y0]), np.array([sx, sy, sx, sy]), np.array([px, py, px, py])

    def full_to_input_xyxy(self, boxes: BoxLike) -> np.ndarray:
        """Full-image pixel boxes -> model-input pixel boxes."""
        off, scale, pad = self._affine()
        return (_arr(boxes) - off) * scale + pad

    def input_to_full_xyxy(self, boxes: BoxLike) -> np.ndarray:
        """Model-input pixel boxes -> full-image pixel boxes (inverse of the above)."""
        off, scale, pad = self._affine()
        return (_arr(boxes) - pad) / scale + off

    def full_to_region_xyxy(self, boxes: BoxLike) -> np.ndarray:
        """Full-image pixels -> pixels relative to the region's top-left corner."""
        x0, y0 = self.region_xyxy[0], self.region_xyxy[1]
        return _arr(boxes) - np.array([x0, y0, x0, y0])

    def region_to_full_xyxy(self, boxes: BoxLike) -> np.ndarray:
        x0, y0 = self.region_xyxy[0], self.region_xyxy[1]
        return _arr(boxes) + np.array([x0, y0, x0, y0])
