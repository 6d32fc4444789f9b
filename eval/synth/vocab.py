"""The SynthVStar vocabulary: shapes (as unit polygons), named colours and surface patterns.

Shape outlines live in a *unit frame*: centred on their unrotated bounding-box centre, x right,
y down, scaled so the longer side of that box spans [-1, 1]. An object of nominal size ``s`` pixels
is its unit outline times ``s / 2``, rotated, then translated to its centre.
"""

from __future__ import annotations

import math

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35),
    "green": (35, 160, 60),
    "blue": (30, 75, 220),
    "yellow": (250, 215, 25),
    "purple": (135, 50, 185),
    "orange": (250, 135, 20),
    "white": (246, 246, 246),
    "black": (18, 18, 18),
    "pink": (250, 140, 200),
    "brown": (125, 72, 30),
}
"""Colour name -> sRGB. Saturated or extreme, so no muted background tone is close to one."""

PATTERNS: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
"""Surface patterns, drawn in the object's *ink* colour (a shade of its own colour) at a period of
a third to a fifth of the object: legible at full resolution, a uniform blur in a 336 px view."""


def name_kind(name: str) -> str | None:
    """``"colour"`` for a SynthVStar name like "red star", ``"pattern"`` for "dotted star", else None."""
    first = name.split()[0] if name.split() else ""
    return "colour" if first in COLORS else "pattern" if first in PATTERNS else None


FREE_ROTATION = frozenset({"circle", "ring", "star", "hexagon"})
"""Shapes that may turn freely; the others turn at most ``MAX_TILT`` so a square never becomes a
diamond."""
MAX_TILT = 20.0
"""Degrees."""

RING_HOLE = 0.55
"""Inner radius of a ring, relative to its outer radius."""


def _regular(k: int, radius: float = 1.0, start_deg: float = -90.0) -> np.ndarray:
    angles = np.deg2rad(start_deg + np.arange(k) * 360.0 / k)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular(points)
    inner_pts = _regular(points, inner, start_deg=-90.0 + 180.0 / points)
    return np.stack([outer, inner_pts], axis=1).reshape(-1, 2)


def _cross(arm: float = 0.32) -> np.ndarray:
    a = arm
    return np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1],
                     [-a, a], [-1, a], [-1, -a], [-a, -a]], dtype=np.float64)


def _normalise(poly: np.ndarray) -> np.ndarray:
    """Centre on the bounding-box centre and scale the longer box side to 2."""
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    return (poly - (lo + hi) / 2) * (2.0 / float((hi - lo).max()))


SHAPES: dict[str, np.ndarray] = {
    name: _normalise(poly)
    for name, poly in {
        "circle": _regular(48),
        "ring": _regular(48),
        "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64),
        "triangle": _regular(3),
        "star": _star(),
        "diamond": np.array([[0, -1], [0.62, 0], [0, 1], [-0.62, 0]], dtype=np.float64),
        "cross": _cross(),
        "hexagon": _regular(6, start_deg=0.0),
    }.items()
}
"""Shape name -> ``(K, 2)`` float64 outer outline in the unit frame (a ring's hole is ``RING_HOLE``)."""

SHAPE_RADIUS: dict[str, float] = {name: float(np.linalg.norm(p, axis=1).max()) for name, p in SHAPES.items()}
"""Largest vertex distance from the centre, unit frame: the footprint radius at any rotation."""


INK_MIX: dict[str, tuple[str, float]] = {
    "red": ("white", 0.35), "green": ("white", 0.5), "blue": ("white", 0.45), "yellow": ("black", 0.3),
    "purple": ("white", 0.4), "orange": ("white", 0.55), "white": ("black", 0.45), "black": ("white", 0.45),
    "pink": ("black", 0.35), "brown": ("white", 0.45),
}
"""Colour -> (toward, amount): its pattern ink is the colour mixed that far toward white or black.
Chosen so every ink differs from its colour in brightness by >= 45 luma levels (the pattern shows)
and lies >= 60 RGB units from every other named colour (the object still reads as its colour)."""


def ink_color(color: str) -> tuple[int, int, int]:
    """The pattern colour of an object of colour ``color`` (see :data:`INK_MIX`)."""
    toward, amount = INK_MIX[color]
    end = 255.0 if toward == "white" else 0.0
    return tuple(int(round(c + (end - c) * amount)) for c in COLORS[color])  # type: ignore[return-value]


def outline(shape: str, cx: float, cy: float, size: float, rotation_deg: float, scale: float = 1.0) -> np.ndarray:
    """``(K, 2)`` float64 outline in image pixels of a ``shape`` of nominal ``size`` px centred at
    ``(cx, cy)``, turned clockwise by ``rotation_deg`` (y points down). ``scale`` shrinks the unit
    outline first (a ring's hole uses ``RING_HOLE``)."""
    t = math.radians(rotation_deg)
    rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    return SHAPES[shape] * (scale * size / 2.0) @ rot + np.array([cx, cy])
