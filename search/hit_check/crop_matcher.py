"""``CropMatcherCheck``: the search model's crop matcher as a :class:`~search.hit_check.protocol.HitCheck`.

It reads a confident box's context crop with the search model's second stage
(:class:`search.vsm.crop_matcher.CropMatcher`) and answers the probability that every known word
of the target name describes it. No language model runs: one conv forward on a 64 px crop (about a
millisecond on a CPU), so it is the first check the engine asks (:mod:`search.hit_check.build`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol, Sequence

from search.hit_check.protocol import HitCheckStats
from seal.core.image_source import ImageSource


class CropReader(Protocol):
    """What the check needs of a crop matcher (:class:`search.vsm.crop_matcher.CropMatcher`)."""

    def known(self, phrase: str) -> bool: ...

    def crop_images(self, image: Any, boxes_xyxy: Sequence[Sequence[float]]) -> Any: ...

    def phrase_probability(self, crops: Any, phrase: str) -> Any: ...


class CropMatcherCheck:
    """The hit check of a crop matcher (``name == "crop"``)."""

    name = "crop"

    def __init__(self, matcher: CropReader) -> None:
        self.matcher = matcher
        self._image = None
        self._stats = HitCheckStats()

    def set_image(self, image: ImageSource) -> None:
        self._image = image.image
        self._stats = HitCheckStats()

    def check(self, target: str, box_xyxy: Sequence[float]) -> float | None:
        return self.check_many(target, [box_xyxy])[0]

    def check_many(self, target: str, boxes: Sequence[Sequence[float]]) -> list[float | None]:
        """:meth:`check` of every box in one forward of the matcher."""
        if self._image is None:
            raise RuntimeError("CropMatcherCheck.check before set_image")
        self._stats.calls += len(boxes)
        if not self.matcher.known(target):
            self._stats.abstained += len(boxes)
            return [None] * len(boxes)
        if not len(boxes):
            return []
        crops = self.matcher.crop_images(self._image, list(boxes))
        self._stats.forwards += 1
        return [float(p) for p in self.matcher.phrase_probability(crops, target)]

    def stats(self) -> HitCheckStats:
        return replace(self._stats)
