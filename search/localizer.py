"""The ``Localizer`` protocol: all the search engine knows about a model.

A localizer is given an image once (:meth:`Localizer.set_image`), then answers cheap batched
questions about regions of it. Regions and boxes are always ``xyxy`` in the *full-image* pixel
frame (upright); heatmaps are logits over the region they describe.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from seal.core.image_source import ImageSource

BoxXYXY = tuple[float, float, float, float]


@dataclass
class Detection:
    """What a localizer saw of one target in one region.

    Attributes:
        boxes_xyxy: ``(K, 4)`` float, candidate boxes in full-image pixels, sorted by score desc.
        scores: ``(K,)`` float in [0, 1], probability that the box holds the target.
        heatmap: ``(h, w)`` float32 logits over the region (row 0 = region top), any resolution;
            high where the target (or evidence for it) is.
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    heatmap: np.ndarray

    def __post_init__(self) -> None:
        self.boxes_xyxy = np.asarray(self.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(self.scores) != len(self.boxes_xyxy):
            raise ValueError(f"{len(self.boxes_xyxy)} boxes but {len(self.scores)} scores")
        if len(self.scores):
            order = np.argsort(-self.scores, kind="stable")
            self.boxes_xyxy, self.scores = self.boxes_xyxy[order], self.scores[order]
        self.heatmap = np.asarray(self.heatmap, dtype=np.float32)
        if self.heatmap.ndim != 2 or min(self.heatmap.shape) < 1:
            raise ValueError(f"heatmap must be 2-D and non-empty, got shape {self.heatmap.shape}")

    @property
    def best_score(self) -> float:
        return float(self.scores[0]) if len(self.scores) else 0.0

    @property
    def best_box(self) -> BoxXYXY | None:
        return tuple(float(v) for v in self.boxes_xyxy[0]) if len(self.scores) else None  # type: ignore[return-value]


@dataclass
class LocalizerStats:
    """Work a localizer did, counted by the localizer itself."""

    patches_encoded: int = 0
    """Patches whose image features were computed."""
    encode_cache_hits: int = 0
    """Patches served from the per-image feature cache (shared across targets)."""
    extra: dict[str, float] = field(default_factory=dict)

    def snapshot(self) -> LocalizerStats:
        """A copy that later work does not change (``extra`` copied too)."""
        return replace(self, extra=dict(self.extra))


@runtime_checkable
class Localizer(Protocol):
    """A model that finds named targets in regions of one image."""

    name: str

    def set_image(self, image: ImageSource) -> None:
        """Bind the image all following calls refer to; clears per-image caches."""

    def locate(self, target: str, regions: Sequence[BoxXYXY]) -> list[Detection]:
        """Look for ``target`` in each region, in one batch. Returns one Detection per region."""

    def suggest_region(self, target: str, region: BoxXYXY) -> np.ndarray | None:
        """Contextual cue: logits ``(h, w)`` over ``region`` for where ``target`` is likely to be,
        or ``None`` when the localizer has no idea."""

    def stats(self) -> LocalizerStats:
        """Work done since the last :meth:`set_image`: a snapshot (:meth:`LocalizerStats.snapshot`),
        which later calls do not change."""
