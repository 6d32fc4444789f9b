"""The ``Verifier`` protocol: a second opinion on a confident box before the search trusts it.

A localizer scores hundreds of candidate boxes per patch; its errors are *near misses*, objects whose
name differs from the target's in one word ("checkered cross" for "dotted cross"). A verifier looks
at one box up close and says how likely it is to show the named target, e.g. the VQA LLM reading
the box's colour or pattern back from a crop (:class:`seal.vqa.verifier.AttributeVerifier`). The
engine (:mod:`search.engine`) asks it about confident hits and fallback candidates only, within
``SearchConfig.max_verifications`` calls per target; see ``SearchConfig.verify_threshold``.

Boxes are ``xyxy`` in full-image pixels, as everywhere in the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from search.image_source import ImageSource
from search.localizer import BoxXYXY


@dataclass
class VerifierStats:
    """Work a verifier did since its last ``set_image``, counted by the verifier itself."""

    calls: int = 0
    """Boxes judged (one model call each)."""
    abstained: int = 0
    """Calls answered with None (the name gave the verifier nothing to check)."""
    vision_tokens: int = 0
    """Vision tokens its model encoded (0 for a verifier without a vision model)."""


@runtime_checkable
class Verifier(Protocol):
    name: str

    def set_image(self, image: ImageSource) -> None:
        """Bind the image all following calls refer to."""

    def verify(self, target: str, box_xyxy: BoxXYXY) -> float | None:
        """Probability in [0, 1] that ``box_xyxy`` shows ``target``; None when the verifier cannot
        judge this name (the engine then trusts the localizer, as without a verifier)."""

    def stats(self) -> VerifierStats:
        """Work done since the last :meth:`set_image`."""
