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

from dataclasses import astuple, dataclass, replace
from typing import Iterable, Protocol, Sequence, runtime_checkable

from search.image_source import ImageSource
from search.localizer import BoxXYXY


@dataclass
class VerifierStats:
    """Work a verifier did since its last ``set_image``, counted by the verifier itself."""

    calls: int = 0
    """Boxes judged."""
    abstained: int = 0
    """Calls answered with None (the name gave the verifier nothing to check)."""
    vision_tokens: int = 0
    """Vision tokens its model encoded (0 for a verifier without a vision model)."""
    llm_calls: int = 0
    """Prompts its language model ran (e.g. one per checked word)."""
    localizer_calls: int = 0
    """``locate`` calls it made on the search's localizer (e.g. :mod:`search.contrast`)."""

    def __add__(self, other: "VerifierStats") -> "VerifierStats":
        return VerifierStats(*(a + b for a, b in zip(astuple(self), astuple(other))))


@runtime_checkable
class Verifier(Protocol):
    name: str

    def set_image(self, image: ImageSource) -> None:
        """Bind the image all following calls refer to."""

    def verify(self, target: str, box_xyxy: BoxXYXY) -> float | None:
        """Probability in [0, 1] that ``box_xyxy`` shows ``target``; None when the verifier cannot
        judge this name (the engine then trusts the localizer, as without a verifier)."""

    def stats(self) -> VerifierStats:
        """Work done since the last :meth:`set_image`: a snapshot, not the live counters (callers
        take differences)."""


def all_of(probabilities: Iterable[float | None], threshold: float) -> float | None:
    """:class:`AllOf`'s rule over its members' answers, taken in order (lazily: a generator is asked no
    further than the first answer below ``threshold``): the lowest answer given, None when all abstain."""
    given: list[float] = []
    for p in probabilities:
        if p is not None:
            given.append(p)
            if p < threshold:
                break
    return min(given) if given else None


class AllOf:
    """Several verifiers asked in turn, cheapest first: a box passes only if each of them that
    judges it gives at least ``threshold`` (the engine's ``verify_threshold``). The answer is the
    lowest probability given; asking stops at the first one below ``threshold``. All abstaining
    is an abstention."""

    def __init__(self, verifiers: Sequence[Verifier], threshold: float) -> None:
        if not verifiers:
            raise ValueError("AllOf: no verifiers")
        self.verifiers, self.threshold = list(verifiers), threshold
        self.name = "+".join(v.name for v in self.verifiers)
        self._own = VerifierStats()

    def set_image(self, image: ImageSource) -> None:
        for v in self.verifiers:
            v.set_image(image)
        self._own = VerifierStats()

    def verify(self, target: str, box_xyxy: BoxXYXY) -> float | None:
        self._own.calls += 1
        p = all_of((v.verify(target, box_xyxy) for v in self.verifiers), self.threshold)
        if p is None:
            self._own.abstained += 1
        return p

    def stats(self) -> VerifierStats:
        """Boxes judged by the whole (``calls``, ``abstained``) and the members' work summed."""
        total = sum((v.stats() for v in self.verifiers), VerifierStats())
        return replace(total, calls=self._own.calls, abstained=self._own.abstained)
