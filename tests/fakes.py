"""Fake localizers for the search tests: ground truth in, exact synthetic answers out."""

from __future__ import annotations

import numpy as np

from search.geometry import intersection_fraction_xyxy
from search.localizer import Detection, LocalizerStats


class FakeLocalizer:
    """Detects a target when its box is fully inside a region whose short side <= ``detect_side``;
    heatmaps are ``hot`` logits on the cells covering the target (else ``cold``), so they are
    informative (``informative=True``) or flat (``False``).

    ``targets``: name -> list of xyxy boxes. Records every call in ``calls``.
    """

    name = "fake"

    def __init__(self, targets: dict[str, list], detect_side: float = 400, hot: float = 8.0, cold: float = -4.0,
                 informative: bool = True, context: np.ndarray | None = None, grid: int = 16,
                 score: float = 0.9) -> None:
        self.targets = {k: [tuple(map(float, b)) for b in v] for k, v in targets.items()}
        self.detect_side, self.hot, self.cold, self.grid = detect_side, hot, cold, grid
        self.informative, self.context, self.score = informative, context, score
        self.calls: list[tuple] = []
        self.image = None
        self.set_image_calls = 0
        self._encoded: set = set()
        self._stats = LocalizerStats()

    def set_image(self, image) -> None:
        self.image = image
        self.set_image_calls += 1
        self._encoded.clear()
        self._stats = LocalizerStats()

    def locate(self, target, regions):
        self.calls.append(("locate", target, [tuple(r) for r in regions]))
        out = []
        for r in regions:
            key = tuple(round(v, 1) for v in r)
            if key in self._encoded:
                self._stats.encode_cache_hits += 1
            else:
                self._encoded.add(key)
                self._stats.patches_encoded += 1
            boxes, scores = [], []
            heat = np.full((self.grid, self.grid), self.cold, dtype=np.float32)
            for b in self.targets.get(target, []):
                inside = intersection_fraction_xyxy(b, r)
                if inside >= 0.99 and min(r[2] - r[0], r[3] - r[1]) <= self.detect_side:
                    boxes.append(b)
                    scores.append(self.score)
                if inside > 0 and self.informative:
                    x0, y0, w, h = r[0], r[1], r[2] - r[0], r[3] - r[1]
                    c0 = int(np.clip((b[0] - x0) / w * self.grid, 0, self.grid - 1))
                    c1 = int(np.clip(np.ceil((b[2] - x0) / w * self.grid), c0 + 1, self.grid))
                    r0 = int(np.clip((b[1] - y0) / h * self.grid, 0, self.grid - 1))
                    r1 = int(np.clip(np.ceil((b[3] - y0) / h * self.grid), r0 + 1, self.grid))
                    heat[r0:r1, c0:c1] = self.hot
            out.append(Detection(np.array(boxes).reshape(-1, 4), np.array(scores), heat))
        return out

    def suggest_region(self, target, region):
        self.calls.append(("suggest", target, tuple(region)))
        return self.context

    def stats(self):
        return self._stats

    def n_calls(self, kind: str) -> int:
        return sum(1 for c in self.calls if c[0] == kind)
