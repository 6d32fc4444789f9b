"""Rasterising SynthVStar scenes: a cluttered muted background, then patterned shapes on top.

All coordinates are full-image pixels, x right, y down, origin at the top-left corner. Boxes are
``[x, y, w, h]`` ints (V*Bench ``bbox``): the tight extent of the pixels an object covers by at
least half (its anti-aliased mask >= 128).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from eval.synth.vocab import COLORS, RING_HOLE, SHAPE_RADIUS, ink_color, outline

SUPERSAMPLE = 2
"""Objects are drawn at this scale and box-filtered down (anti-aliased edges)."""
REFERENCE_AREA = 2400 * 1800
"""Image area at which the clutter counts of :class:`SynthConfig` apply as given."""


@dataclass
class Drawable:
    """One object to draw. ``size`` is the nominal extent in px (see :mod:`eval.synth.vocab`);
    ``pattern_period`` is in px; ``pattern_angle`` in degrees; ``pattern_phase`` in [0, 1)."""

    shape: str
    color: str
    pattern: str
    cx: float
    cy: float
    size: float
    rotation: float
    pattern_angle: float = 0.0
    pattern_period: float = 8.0
    pattern_phase: float = 0.0

    @property
    def radius(self) -> float:
        """Footprint radius, px: the object lies inside this circle around ``(cx, cy)``."""
        return SHAPE_RADIUS[self.shape] * self.size / 2.0


def muted_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """A low-saturation mid-brightness tone, far from every named colour of :data:`COLORS`."""
    h, s, v = rng.random(), rng.uniform(0.04, 0.28), rng.uniform(0.33, 0.72)
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def render_background(rng: np.random.Generator, width: int, height: int, blobs: int, lines: int) -> Image.Image:
    """A cluttered ``width x height`` RGB background: smooth colour field with a brightness gradient,
    mid-frequency mottling, pixel grain, then muted blobs and lines (counts scaled by area)."""
    gw, gh = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    grid = np.array([muted_color(rng) for _ in range(gw * gh)], dtype=np.float64).reshape(gh, gw, 3)
    ramp = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.1), gw if rng.random() < 0.5 else gh)
    grid *= ramp[None, :, None] if ramp.size == gw else ramp[:, None, None]
    field = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)

    mw, mh = max(2, width // 24), max(2, height // 24)
    mottle = Image.fromarray(rng.integers(0, 256, (mh, mw), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(field, dtype=np.int16)
    shade = (np.asarray(mottle, dtype=np.int16) - 128) // 6 + rng.integers(-9, 10, (height, width), dtype=np.int16)
    pixels = np.clip(pixels + shade[:, :, None], 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)

    draw = ImageDraw.Draw(image)
    scale = width * height / REFERENCE_AREA
    long_side = max(width, height)
    for _ in range(int(round(blobs * scale))):
        r = long_side * rng.uniform(0.01, 0.07)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        k = int(rng.integers(5, 10))
        angles = np.sort(rng.uniform(0, 2 * math.pi, k))
        radii = r * rng.uniform(0.5, 1.0, k)
        pts = [(cx + a * math.cos(t), cy + a * math.sin(t) * rng.uniform(0.5, 1.0)) for t, a in zip(angles, radii)]
        draw.polygon(pts, fill=muted_color(rng))
    for _ in range(int(round(lines * scale))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        t, length = rng.uniform(0, 2 * math.pi), long_side * rng.uniform(0.03, 0.3)
        draw.line([(x0, y0), (x0 + length * math.cos(t), y0 + length * math.sin(t))],
                  fill=muted_color(rng), width=int(rng.integers(1, max(2, long_side // 400) + 1)))
    return image


def pattern_ink(obj: Drawable, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean ink mask of ``obj``'s pattern at pixel centres ``(xs, ys)`` (full-image px, any shape).

    The pattern lives in the object's own frame (turned with it), so it reads the same at any
    rotation. ``solid`` has no ink.
    """
    if obj.pattern == "solid":
        return np.zeros(np.broadcast_shapes(xs.shape, ys.shape), dtype=bool)
    t = math.radians(obj.rotation + obj.pattern_angle)
    dx, dy = xs - obj.cx, ys - obj.cy
    u = (dx * math.cos(t) + dy * math.sin(t)) / obj.pattern_period + obj.pattern_phase
    v = (-dx * math.sin(t) + dy * math.cos(t)) / obj.pattern_period + obj.pattern_phase
    if obj.pattern == "striped":
        return (u % 1.0) < 0.42
    if obj.pattern == "checkered":
        return (np.floor(u) + np.floor(v)) % 2 == 0
    if obj.pattern == "dotted":
        row = np.floor(v)
        fu = (u + 0.5 * (row % 2)) % 1.0 - 0.5
        fv = v % 1.0 - 0.5
        return fu * fu + fv * fv < 0.27 ** 2
    raise ValueError(f"unknown pattern {obj.pattern!r}")


def draw_object(canvas: Image.Image, obj: Drawable) -> tuple[list[int], list[list[int]]]:
    """Draw ``obj`` onto ``canvas`` (RGB, modified in place).

    Returns:
        ``(bbox, polygon)``: ``bbox`` the ``[x, y, w, h]`` int tight extent of the drawn object
        (mask >= 128), ``polygon`` its outer outline as ``[[x, y], ...]`` int pixels.
    """
    r = obj.radius
    x0, y0 = int(math.floor(obj.cx - r)) - 1, int(math.floor(obj.cy - r)) - 1
    side = int(math.ceil(2 * r)) + 3
    ss = SUPERSAMPLE
    outer = outline(obj.shape, obj.cx, obj.cy, obj.size, obj.rotation)
    big = Image.new("L", (side * ss, side * ss), 0)
    pen = ImageDraw.Draw(big)
    pen.polygon([((x - x0) * ss, (y - y0) * ss) for x, y in outer], fill=255)
    if obj.shape == "ring":
        hole = outline(obj.shape, obj.cx, obj.cy, obj.size, obj.rotation, scale=RING_HOLE)
        pen.polygon([((x - x0) * ss, (y - y0) * ss) for x, y in hole], fill=0)
    mask = big.reduce(ss)  # (side, side) uint8 coverage

    ys, xs = np.mgrid[y0:y0 + side, x0:x0 + side].astype(np.float64) + 0.5
    ink = pattern_ink(obj, xs, ys)  # (side, side) bool
    paint = np.empty((side, side, 3), dtype=np.uint8)
    paint[:] = COLORS[obj.color]
    paint[ink] = ink_color(obj.color)
    canvas.paste(Image.fromarray(paint), (x0, y0), mask)

    cover = np.asarray(mask) >= 128
    rows, cols = np.flatnonzero(cover.any(axis=1)), np.flatnonzero(cover.any(axis=0))
    if rows.size == 0:
        raise ValueError(f"object too small to draw: {obj.shape} of size {obj.size:.1f} px")
    bbox = [x0 + int(cols[0]), y0 + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
    polygon = [[int(round(x)), int(round(y))] for x, y in outer]
    return bbox, polygon
