"""The ``HitCheck`` protocol: a second opinion on a confident box before the search trusts it.

A hit check looks at one box up close and says how likely it is to show the named target (the
search model's crop matcher, :mod:`search.hit_check.crop_matcher`; the VQA LLM reading the box's
words back, :mod:`search.hit_check.words`). The engine asks it about confident boxes and fallback
candidates only, within ``hit_check.max_calls`` per target (:mod:`search.hit_check.rules`).

Boxes are ``xyxy`` in full-image pixels, as everywhere in the search.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, replace
from typing import Iterable, Protocol, Sequence, runtime_checkable

from search.localizer import BoxXYXY
from seal.core.image_source import ImageSource


@dataclass
class HitCheckStats:
    """Work a hit check did since its last ``set_image``, counted by the check itself."""

    calls: int = 0
    """Boxes judged."""
    abstained: int = 0
    """Calls answered with None (the name gave the check nothing to read)."""
    vision_tokens: int = 0
    """Vision tokens its model encoded (0 for a check without a vision LLM)."""
    llm_calls: int = 0
    """Prompts its language model ran (e.g. one per checked word)."""
    localizer_calls: int = 0
    """``locate`` calls it made on the search's localizer."""
    forwards: int = 0
    """Passes of its own model (crop matcher or LLM): boxes read in one batch are one pass."""

    def __add__(self, other: "HitCheckStats") -> "HitCheckStats":
        return HitCheckStats(*(a + b for a, b in zip(astuple(self), astuple(other))))


@runtime_checkable
class HitCheck(Protocol):
    name: str

    def set_image(self, image: ImageSource) -> None:
        """Bind the image all following calls refer to."""

    def check(self, target: str, box_xyxy: BoxXYXY) -> float | None:
        """Probability in [0, 1] that ``box_xyxy`` shows ``target``; None when this check cannot
        judge the name (the engine then trusts the localizer, as without a check)."""

    def stats(self) -> HitCheckStats:
        """Work done since the last :meth:`set_image`: a snapshot, not the live counters (callers
        take differences)."""


def check_many(hit_check: HitCheck, target: str, boxes: Sequence[BoxXYXY]) -> list[float | None]:
    """``hit_check``'s probabilities for ``boxes`` (one per box, None where it abstains): its own
    batched ``check_many`` when it has one (one pass of its model for all the boxes), else one
    :meth:`HitCheck.check` per box."""
    batched = getattr(hit_check, "check_many", None)
    if batched is not None:
        return list(batched(target, boxes))
    return [hit_check.check(target, box) for box in boxes]


def all_checks(probabilities: Iterable[float | None], threshold: float) -> float | None:
    """:class:`AllChecks`' rule over its members' answers, taken in order (lazily: a generator is
    asked no further than the first answer below ``threshold``): the lowest answer given, None when
    all abstain."""
    given: list[float] = []
    for p in probabilities:
        if p is not None:
            given.append(p)
            if p < threshold:
                break
    return min(given) if given else None


class AllChecks:
    """Several hit checks asked in turn, cheapest first: a box passes only if each of them that
    judges it gives at least ``threshold`` (``hit_check.threshold``). The answer is the lowest
    probability given; asking stops at the first one below ``threshold``. All abstaining is an
    abstention."""

    def __init__(self, checks: Sequence[HitCheck], threshold: float) -> None:
        if not checks:
            raise ValueError("AllChecks: no checks")
        self.checks, self.threshold = list(checks), threshold
        self.name = "+".join(c.name for c in self.checks)
        self._own = HitCheckStats()

    def set_image(self, image: ImageSource) -> None:
        for c in self.checks:
            c.set_image(image)
        self._own = HitCheckStats()

    def check(self, target: str, box_xyxy: BoxXYXY) -> float | None:
        self._own.calls += 1
        p = all_checks((c.check(target, box_xyxy) for c in self.checks), self.threshold)
        if p is None:
            self._own.abstained += 1
        return p

    def check_many(self, target: str, boxes: Sequence[BoxXYXY]) -> list[float | None]:
        """:meth:`check` of each box with each member batched: a member reads only the boxes every
        member before it let through (as :meth:`check` stops at the first answer below threshold)."""
        self._own.calls += len(boxes)
        given: list[list[float]] = [[] for _ in boxes]
        open_ = list(range(len(boxes)))
        for c in self.checks:
            if not open_:
                break
            for i, p in zip(open_, check_many(c, target, [boxes[i] for i in open_])):
                if p is not None:
                    given[i].append(p)
            open_ = [i for i in open_ if not given[i] or given[i][-1] >= self.threshold]
        out = [min(g) if g else None for g in given]
        self._own.abstained += sum(p is None for p in out)
        return out

    def stats(self) -> HitCheckStats:
        """Boxes judged by the whole (``calls``, ``abstained``) and the members' work summed."""
        total = sum((c.stats() for c in self.checks), HitCheckStats())
        return replace(total, calls=self._own.calls, abstained=self._own.abstained)
