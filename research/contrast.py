"""``ContrastVerifier``: the search model checks its own hit against the target's one-word variants.

A near miss differs from the target in one word ("checkered circle" for "checkered hexagon"). The
localizer is asked again, on one window around the box, under the target's name and under every
variant with one word of a contrasted kind swapped ("checkered star", "checkered ring", ...). Each
name's score of the box is its best detection overlapping the box (IoU > ``match_iou``); with ``t``
the target's and ``a`` the best variant's,

    p = t / (t + margin * a)

so ``p >= 0.5`` (the engine's default ``verify_threshold``) exactly when ``t >= margin * a``: a
``margin`` below 1 keeps a target the model reads only a little worse than a variant, and rejects a
box some variant explains clearly better. A box no name detects, or a name without a contrasted
word, gets None (abstain).

It needs nothing but the :class:`~search.localizer.Localizer` protocol: the window's encoding is the
localizer's to cache, and ``set_image`` does not rebind the localizer (the session already did).
Cost: ``1 + len(variants)`` locate calls on one region per box, counted in ``stats().localizer_calls``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from search.config import SearchConfig
from seal.core.geometry import box_window_xyxy, iou_xyxy
from seal.core.image_source import ImageSource
from search.localizer import BoxXYXY, Localizer
from search.tree import leaf_side
from search.hit_check.protocol import HitCheckStats


class ContrastVerifier:
    """A :class:`~search.hit_check.protocol.HitCheck` built on a localizer.

    Args:
        localizer: the search's localizer (the same object: its caches are shared).
        vocabularies: kind -> its values; a target word found in one of them is swapped for each
            other value of that kind to make the variants.
        cfg: the search config (leaf side of the window).
        margin: see the module docstring (> 0).
        window: the window's side in leaf sides (at least twice the box's long side).
        match_iou: a detection is the box's when their IoU exceeds this.
    """

    name = "contrast"

    def __init__(self, localizer: Localizer, vocabularies: Mapping[str, Sequence[str]], cfg: SearchConfig,
                 margin: float = 0.6, window: float = 1.25, match_iou: float = 0.5) -> None:
        if margin <= 0 or window <= 0 or not 0 < match_iou < 1:
            raise ValueError(f"ContrastVerifier: need margin > 0, window > 0, 0 < match_iou < 1; found "
                             f"{margin} / {window} / {match_iou}")
        self.localizer, self.cfg = localizer, cfg
        self.kind_of = {str(v).lower(): k for k, values in vocabularies.items() for v in values}
        self.values = {k: [str(v).lower() for v in values] for k, values in vocabularies.items()}
        self.margin, self.window, self.match_iou = margin, window, match_iou
        self._size: tuple[int, int] | None = None
        self._stats = HitCheckStats()

    def set_image(self, image: ImageSource) -> None:
        self._size = (image.width, image.height)
        self._stats = HitCheckStats()

    def stats(self) -> HitCheckStats:
        return replace(self._stats)

    def variants(self, target: str) -> list[str]:
        """The names one contrasted word away from ``target`` (lower case, in vocabulary order)."""
        words = target.lower().split()
        out = []
        for i, w in enumerate(words):
            kind = self.kind_of.get(w)
            if kind is not None:
                out += [" ".join(words[:i] + [v] + words[i + 1:]) for v in self.values[kind] if v != w]
        return out

    def verify(self, target: str, box_xyxy: BoxXYXY) -> float | None:
        if self._size is None:
            raise RuntimeError("ContrastVerifier.verify before set_image")
        self._stats.calls += 1
        variants = self.variants(target)
        if not variants:
            self._stats.abstained += 1
            return None
        window = self._window(box_xyxy)
        t = self._box_score(target, window, box_xyxy)
        a = max(self._box_score(v, window, box_xyxy) for v in variants)
        if t + a <= 0.0:
            self._stats.abstained += 1
            return None
        return float(t / (t + self.margin * a))

    def _window(self, box: BoxXYXY) -> BoxXYXY:
        """The square around ``box``: ``window`` leaf sides, at least twice the box's long side."""
        w, h = self._size  # type: ignore[misc]
        return box_window_xyxy(box, self.window * leaf_side(w, h, self.cfg), w, h)

    def _box_score(self, name: str, window: BoxXYXY, box: BoxXYXY) -> float:
        """``name``'s best detection score among its boxes in ``window`` matching ``box`` (0 if none)."""
        (det,) = self.localizer.locate(name, [window])
        self._stats.localizer_calls += 1
        scores = np.asarray(det.scores, dtype=np.float64).ravel()
        if scores.size == 0:
            return 0.0
        match = np.asarray(iou_xyxy(box, det.boxes_xyxy)).ravel() > self.match_iou
        return float(scores[match].max()) if match.any() else 0.0
