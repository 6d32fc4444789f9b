"""Scene composition: object attributes, unique target names, near misses and non-overlapping layout.

An object is named by some of its attributes (``NAME_ATTRS`` per question kind): a colour question
names its target by pattern + shape ("striped star"), a pattern or spatial question by colour +
shape ("blue star"). No other object in the image carries all of a target's name attributes, so the
name is unique. A *near miss* differs from a target's name in exactly one of those attributes
(another colour of the same shape, the same colour on another shape, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eval.synth.draw import Drawable
from eval.synth.vocab import COLORS, FREE_ROTATION, MAX_TILT, PATTERNS, SHAPE_RADIUS, SHAPES

ATTRS = ("pattern", "color", "shape")
"""Attribute order in spoken names: "striped blue star"."""
VALUES: dict[str, tuple[str, ...]] = {"pattern": PATTERNS, "color": tuple(COLORS), "shape": tuple(SHAPES)}
NAME_ATTRS: dict[str, tuple[str, ...]] = {
    "color": ("pattern", "shape"),
    "pattern": ("color", "shape"),
    "spatial": ("color", "shape"),
}
"""Question kind -> the attributes that name its target(s); the asked attribute is never one."""

Attrs = dict[str, str]


@dataclass
class SceneObject(Drawable):
    """A drawn object with its role and, once drawn, its ``[x, y, w, h]`` box and outline (px)."""

    role: str = "distractor"
    """``target`` | ``near_miss`` | ``distractor``."""
    name: str = ""
    bbox: list[int] = field(default_factory=list)
    polygon: list[list[int]] = field(default_factory=list)

    @property
    def box_side(self) -> int:
        """Long side of the drawn box, px (the size legibility is judged by)."""
        return max(self.bbox[2], self.bbox[3])

    @property
    def attrs(self) -> Attrs:
        return {"pattern": self.pattern, "color": self.color, "shape": self.shape}

    def to_json(self) -> dict:
        """The sidecar record (see api.md)."""
        return {"name": self.name, "shape": self.shape, "color": self.color, "pattern": self.pattern,
                "bbox": list(self.bbox), "polygon": [list(p) for p in self.polygon], "role": self.role}


def describe(attrs: Attrs, keys: tuple[str, ...] = ATTRS) -> str:
    """Spoken name from the attributes in ``keys``: ``describe(a, ("color", "shape")) == "blue star"``."""
    return " ".join(attrs[k] for k in ATTRS if k in keys)


def matches(attrs: Attrs, target: Attrs, keys: tuple[str, ...]) -> bool:
    """Whether ``attrs`` would answer to ``target``'s name (same value for every key)."""
    return all(attrs[k] == target[k] for k in keys)


def is_near_miss(attrs: Attrs, target: Attrs, keys: tuple[str, ...]) -> bool:
    """Differs from ``target``'s name in exactly one of ``keys``."""
    return sum(attrs[k] != target[k] for k in keys) == 1


def random_attrs(rng: np.random.Generator) -> Attrs:
    return {k: str(rng.choice(VALUES[k])) for k in ATTRS}


def free_attrs(rng: np.random.Generator, taken: list[tuple[Attrs, tuple[str, ...]]], tries: int = 100) -> Attrs:
    """Random attributes that match no name in ``taken`` (pairs of target attrs and name keys)."""
    for _ in range(tries):
        a = random_attrs(rng)
        if not any(matches(a, t, keys) for t, keys in taken):
            return a
    raise RuntimeError("could not draw attributes distinct from the target names")


def near_miss_attrs(rng: np.random.Generator, target: Attrs, keys: tuple[str, ...], count: int,
                    taken: list[tuple[Attrs, tuple[str, ...]]]) -> list[Attrs]:
    """``count`` near misses of ``target``: each changes one name attribute; recipes alternate between
    keeping and changing the unnamed attribute (so a colour question on a "striped star" gets a
    dotted star of the same colour, a solid star of another colour, a striped circle of the same
    colour, ...). None of them matches a name in ``taken``."""
    free = [k for k in ATTRS if k not in keys]
    recipes = [(k, keep) for k in keys for keep in (True, False)]
    order = [recipes[i] for i in rng.permutation(len(recipes))]
    out: list[Attrs] = []
    for i in range(count):
        changed, keep_free = order[i % len(order)]
        for _ in range(50):
            a = dict(target)
            a[changed] = _other(rng, changed, target[changed])
            for k in free:
                a[k] = target[k] if keep_free else _other(rng, k, target[k])
            if not any(matches(a, t, ks) for t, ks in taken):
                out.append(a)
                break
    return out


def _other(rng: np.random.Generator, key: str, value: str) -> str:
    return str(rng.choice([v for v in VALUES[key] if v != value]))


def new_object(rng: np.random.Generator, attrs: Attrs, size: float, role: str = "distractor") -> SceneObject:
    """An unplaced object (centre 0, 0) of nominal ``size`` px with random rotation and pattern phase."""
    tilt = rng.uniform(0, 360) if attrs["shape"] in FREE_ROTATION else rng.uniform(-MAX_TILT, MAX_TILT)
    angle = float(rng.choice([0.0, 45.0, 90.0, 135.0])) if attrs["pattern"] == "striped" else 0.0
    return SceneObject(shape=attrs["shape"], color=attrs["color"], pattern=attrs["pattern"], cx=0.0, cy=0.0,
                       size=float(size), rotation=float(tilt), pattern_angle=angle,
                       pattern_period=float(size / rng.uniform(3.0, 4.5)), pattern_phase=float(rng.random()),
                       role=role)


def footprint_radius(shape: str, size: float) -> float:
    return SHAPE_RADIUS[shape] * size / 2.0


class Layout:
    """Non-overlapping circular footprints inside a ``width x height`` image (px).

    Two footprints keep a gap of ``gap`` times the smaller radius (at least 2 px), and every
    footprint stays ``margin`` px inside the image.
    """

    def __init__(self, width: int, height: int, gap: float = 0.3) -> None:
        self.width, self.height, self.gap = width, height, gap
        self.margin = 2.0 + 0.01 * min(width, height)
        self._circles = np.zeros((0, 3), dtype=np.float64)  # (N, 3) cx, cy, r

    def fits(self, cx: float, cy: float, r: float) -> bool:
        m = self.margin
        if not (m + r <= cx <= self.width - m - r and m + r <= cy <= self.height - m - r):
            return False
        c = self._circles
        if not len(c):
            return True
        need = r + c[:, 2] + np.maximum(2.0, self.gap * np.minimum(r, c[:, 2]))
        return bool(np.all(np.hypot(c[:, 0] - cx, c[:, 1] - cy) >= need))

    def add(self, cx: float, cy: float, r: float) -> None:
        self._circles = np.vstack([self._circles, [cx, cy, r]])

    def place(self, rng: np.random.Generator, obj: SceneObject, tries: int = 200) -> bool:
        """Move ``obj`` to a random free spot and reserve it; False (obj unchanged) when none found."""
        r = obj.radius
        lo = self.margin + r
        if lo > self.width - lo or lo > self.height - lo:
            return False
        for _ in range(tries):
            cx, cy = rng.uniform(lo, self.width - lo), rng.uniform(lo, self.height - lo)
            if self.fits(cx, cy, r):
                obj.cx, obj.cy = float(cx), float(cy)
                self.add(cx, cy, r)
                return True
        return False

    def place_apart(self, rng: np.random.Generator, a: SceneObject, b: SceneObject, min_gap_px: float,
                    tries: int = 2000) -> bool:
        """Place ``a`` and ``b`` with at least ``min_gap_px`` between their footprints along x."""
        for _ in range(tries):
            xa = rng.uniform(self.margin + a.radius, self.width - self.margin - a.radius)
            xb = rng.uniform(self.margin + b.radius, self.width - self.margin - b.radius)
            if abs(xa - xb) - a.radius - b.radius < min_gap_px:
                continue
            ya = rng.uniform(self.margin + a.radius, self.height - self.margin - a.radius)
            yb = rng.uniform(self.margin + b.radius, self.height - self.margin - b.radius)
            if self.fits(xa, ya, a.radius) and self.fits(xb, yb, b.radius):
                a.cx, a.cy, b.cx, b.cy = float(xa), float(ya), float(xb), float(yb)
                self.add(xa, ya, a.radius)
                self.add(xb, yb, b.radius)
                return True
        return False


def assign_roles(objects: list[SceneObject], targets: list[SceneObject], keys: tuple[str, ...]) -> None:
    """Set every non-target's role (``near_miss`` when it differs from some target's name in exactly
    one attribute) and its name (the full "pattern colour shape" description)."""
    for obj in objects:
        if obj.role == "target":
            continue
        near = any(is_near_miss(obj.attrs, t.attrs, keys) for t in targets)
        obj.role = "near_miss" if near else "distractor"
        obj.name = describe(obj.attrs)


def size_px(rng: np.random.Generator, frac_range: list[float], long_side: int, min_px: float = 8.0) -> float:
    """Nominal object size in px, uniform in ``frac_range`` of ``long_side`` (at least ``min_px``)."""
    return max(min_px, rng.uniform(frac_range[0], frac_range[1]) * long_side)


def fits_image(shape: str, size: float, width: int, height: int) -> float:
    """``size`` shrunk (if needed) so the footprint takes at most 80% of the short side."""
    return min(size, 0.8 * min(width, height) / SHAPE_RADIUS[shape])
