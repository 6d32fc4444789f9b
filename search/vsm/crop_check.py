"""``CropCheckVerifier``: the search model's crop matcher as a :class:`search.verifier.Verifier`.

It reads a confident box's context crop with :class:`search.vsm.crop_matcher.CropMatcher` and
answers the probability that every known word of the target name describes it. No language model
runs: one conv forward on a 64 px crop (about a millisecond on a CPU), so it is the first check the
engine asks (:func:`seal.vqa.verifier.hit_checker`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from search.image_source import ImageSource
from search.verifier import VerifierStats
from search.vsm.crop_matcher import CropMatcher


class CropCheckVerifier:
    """Verifier protocol over a :class:`CropMatcher` (``name == "crop"``)."""

    name = "crop"

    def __init__(self, matcher: CropMatcher) -> None:
        self.matcher = matcher.eval()
        self._image = None
        self._stats = VerifierStats()

    def set_image(self, image: ImageSource) -> None:
        self._image = image.image
        self._stats = VerifierStats()

    def verify(self, target: str, box_xyxy: Sequence[float]) -> float | None:
        if self._image is None:
            raise RuntimeError("CropCheckVerifier.verify before set_image")
        self._stats.calls += 1
        if not self.matcher.known(target):
            self._stats.abstained += 1
            return None
        crops = self.matcher.crop_images(self._image, [box_xyxy])
        return float(self.matcher.phrase_probability(crops, target)[0])

    def stats(self) -> VerifierStats:
        return replace(self._stats)
