"""Fake localizers for tests: synthetic ground truth / synthetic heatmaps in, exact answers out.

:class:`FakeLocalizer` implements the :class:`search.localizer.Localizer` protocol without a model:

- **Detections.** A ground-truth box (``targets[name]``, full-image ``xyxy``) is detected in a
  region when at least 99 % of it lies inside and the region's short side is ``<= detect_side``
  (a stand-in for "legible at this zoom"), with score ``score`` (a float, or a dict name -> float).
  ``decoys[name]`` are ``(box, score)`` pairs detected whenever they lie in the region, at any
  zoom (false positives, near misses).
- **Heatmaps.** ``grid`` (int or ``(h, w)``) logits over the region: ``hot`` on every cell a
  ground-truth box of the target overlaps, ``cold`` elsewhere (``informative=False``: all
  ``cold``). ``scene_heatmaps[name]`` instead gives ``(H', W')`` logits over the *full image*,
  sampled at the centres of the region's ``grid`` cells (nearest cell): handcrafted evidence.
- **Context cue.** ``suggest_region`` returns ``context`` (an array, ``None``, or a callable
  ``(target, region) -> array | None``).
- ``delay_s`` sleeps in every ``locate`` / ``suggest_region`` call (deadline tests).

Every call is recorded in ``calls``; ``stats()`` counts patches like a per-image feature cache keyed
by the region (a region seen before, for any target, is a cache hit).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from PIL import Image

from seal.core.geometry import intersection_fraction_xyxy
from seal.core.image_source import ImageSource
from search.localizer import Detection, LocalizerStats

Box = tuple[float, float, float, float]


def blank_image(width: int, height: int) -> ImageSource:
    """A black ``width x height`` image (the fakes never look at pixels)."""
    return ImageSource(Image.new("RGB", (width, height)))


class FakeLocalizer:
    name = "fake"

    def __init__(self, targets: dict[str, list], detect_side: float = 400, hot: float = 8.0, cold: float = -4.0,
                 informative: bool = True, context: np.ndarray | Callable | None = None,
                 grid: int | tuple[int, int] = 16, score: float | dict[str, float] = 0.9,
                 decoys: dict[str, list[tuple[Box, float]]] | None = None,
                 scene_heatmaps: dict[str, np.ndarray] | None = None, delay_s: float = 0.0) -> None:
        self.targets = {k: [tuple(map(float, b)) for b in v] for k, v in targets.items()}
        self.detect_side, self.hot, self.cold = detect_side, hot, cold
        self.grid = (grid, grid) if isinstance(grid, int) else tuple(grid)
        self.informative, self.context, self.score = informative, context, score
        self.decoys = {k: [(tuple(map(float, b)), float(s)) for b, s in v] for k, v in (decoys or {}).items()}
        self.scene_heatmaps = {k: np.asarray(v, dtype=np.float32) for k, v in (scene_heatmaps or {}).items()}
        self.delay_s = delay_s
        self.calls: list[tuple] = []
        self.image = None
        self.set_image_calls = 0
        self._encoded: set = set()
        self._stats = LocalizerStats()

    # ---- the Localizer protocol -----------------------------------------------------------------

    def set_image(self, image) -> None:
        self.image = image
        self.set_image_calls += 1
        self._encoded.clear()
        self._stats = LocalizerStats()

    def locate(self, target: str, regions) -> list[Detection]:
        self.calls.append(("locate", target, [tuple(float(v) for v in r) for r in regions]))
        self._sleep()
        out = []
        for region in regions:
            region = tuple(float(v) for v in region)
            self._encode(region)
            boxes, scores = self._detections(target, region)
            out.append(Detection(np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores),
                                 self._heatmap(target, region)))
        return out

    def suggest_region(self, target: str, region) -> np.ndarray | None:
        self.calls.append(("suggest", target, tuple(float(v) for v in region)))
        self._sleep()
        self._encode(tuple(float(v) for v in region))
        return self.context(target, region) if callable(self.context) else self.context

    def stats(self) -> LocalizerStats:
        return self._stats.snapshot()

    # ---- helpers for tests ----------------------------------------------------------------------

    def n_calls(self, kind: str) -> int:
        """Number of ``"locate"`` or ``"suggest"`` calls so far."""
        return sum(1 for c in self.calls if c[0] == kind)

    def located_regions(self) -> list[Box]:
        """Every region passed to ``locate``, in call order."""
        return [r for c in self.calls if c[0] == "locate" for r in c[2]]

    # ---- internals ------------------------------------------------------------------------------

    def _sleep(self) -> None:
        if self.delay_s > 0:
            time.sleep(self.delay_s)

    def _encode(self, region: Box) -> None:
        key = tuple(round(v, 1) for v in region)
        if key in self._encoded:
            self._stats.encode_cache_hits += 1
        else:
            self._encoded.add(key)
            self._stats.patches_encoded += 1

    def _detections(self, target: str, region: Box) -> tuple[list, list]:
        legible = min(region[2] - region[0], region[3] - region[1]) <= self.detect_side
        score = self.score[target] if isinstance(self.score, dict) else self.score
        found = [(b, score) for b in self.targets.get(target, []) if legible and _inside(b, region)]
        found += [(b, s) for b, s in self.decoys.get(target, []) if _inside(b, region)]
        return [b for b, _ in found], [s for _, s in found]

    def _heatmap(self, target: str, region: Box) -> np.ndarray:
        gh, gw = self.grid
        x0, y0, x1, y1 = region
        if target in self.scene_heatmaps:
            scene = self.scene_heatmaps[target]
            sh, sw = scene.shape
            iw, ih = self.image.width, self.image.height  # set_image must have been called
            cx = x0 + (np.arange(gw) + 0.5) * (x1 - x0) / gw  # cell centres, full-image px
            cy = y0 + (np.arange(gh) + 0.5) * (y1 - y0) / gh
            cols = np.clip((cx / iw * sw).astype(int), 0, sw - 1)
            rows = np.clip((cy / ih * sh).astype(int), 0, sh - 1)
            return scene[np.ix_(rows, cols)].astype(np.float32)
        heat = np.full((gh, gw), self.cold, dtype=np.float32)
        if not self.informative:
            return heat
        for b in self.targets.get(target, []):
            c0, c1 = _cells(b[0], b[2], x0, x1, gw)
            r0, r1 = _cells(b[1], b[3], y0, y1, gh)
            if c0 < c1 and r0 < r1:
                heat[r0:r1, c0:c1] = self.hot
        return heat


def _inside(box: Box, region: Box) -> bool:
    return intersection_fraction_xyxy(box, region) >= 0.99


def _cells(lo: float, hi: float, start: float, end: float, n: int) -> tuple[int, int]:
    """Index range ``[a, b)`` of the ``n`` cells over ``[start, end]`` that ``[lo, hi]`` overlaps."""
    size = (end - start) / n
    a = int(np.floor((max(lo, start) - start) / size))
    b = int(np.ceil((min(hi, end) - start) / size))
    if hi <= start or lo >= end:
        return 0, 0
    return max(a, 0), min(max(b, a + 1), n)


class FakeHitCheck:
    """A :class:`search.hit_check.protocol.HitCheck` without a model: a box showing one of ``truth[name]``
    (IoU >= 0.5) gets ``p_true``, any other box ``p_false``; ``abstain`` answers None to everything
    and ``value`` (when given) is returned for every box (for bad-answer tests)."""

    name = "fake_check"

    def __init__(self, truth: dict[str, list], p_true: float = 0.9, p_false: float = 0.05, abstain: bool = False,
                 value=None) -> None:
        from search.hit_check.protocol import HitCheckStats

        self.truth = {k: [tuple(map(float, b)) for b in v] for k, v in truth.items()}
        self.p_true, self.p_false, self.abstain, self.value = p_true, p_false, abstain, value
        self.asked: list[tuple[str, Box]] = []
        self.set_image_calls = 0
        self._stats = HitCheckStats()

    def set_image(self, image) -> None:
        from search.hit_check.protocol import HitCheckStats

        self.set_image_calls += 1
        self._stats = HitCheckStats()

    def check(self, target: str, box_xyxy) -> float | None:
        from seal.core.geometry import iou_xyxy

        box = tuple(float(v) for v in box_xyxy)
        self.asked.append((target, box))
        self._stats.calls += 1
        self._stats.forwards += 1
        if self.value is not None:
            return self.value
        if self.abstain:
            self._stats.abstained += 1
            return None
        truth = self.truth.get(target, [])
        return self.p_true if truth and float(iou_xyxy(box, truth).max()) >= 0.5 else self.p_false

    def stats(self):
        from dataclasses import replace

        return replace(self._stats)
