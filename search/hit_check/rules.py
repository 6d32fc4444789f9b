"""The engine's side of the hit check: which boxes a :class:`~search.hit_check.protocol.HitCheck` is
asked about, and what its answers mean for one target's search.

- A visited node's confident boxes (score ``> search.confidence_high``) are checked best first, at
  most ``hit_check.per_node`` of them; the first one the check accepts (probability ``>=
  hit_check.threshold``) is the hit and stops the search.
- A rejected box is remembered: a box overlapping it by IoU ``> search.nms_iou`` (the same object
  seen from another node) is rejected without a call, and a rejected box is not returned (but see
  ``hit_check.floor`` below).
- With ``search.select: best`` every accepted confident box is a candidate, and the answer is the
  most probable one (:func:`rank`); a box of an object already accepted is not asked about again.
  With ``search.compare_rejected`` a rejected confident box with probability ``>= hit_check.floor``
  is a candidate as well (:meth:`HitCheckState.candidates`).
- Without an accepted hit, the anytime fallback checks the visited nodes' boxes scoring ``>=
  search.confidence_low`` best first, at most ``hit_check.fallback_top`` distinct objects.
- With ``hit_check.floor > 0``, when nothing was accepted, the most probable rejected box with
  probability ``>= floor`` is the fallback after all (a check that sometimes rejects the target then
  loses it only to a box it believes more).
- ``search.root_check``: the root's best boxes are read in one batch whatever their scores; the most
  probable one at or above ``search.root_check_threshold`` is the hit (:meth:`HitCheckState.root_hits`).
- The check's None (it cannot judge the name) and a spent budget (``hit_check.max_calls``) both
  mean: trust the localizer, as the engine does without a check.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable, Iterator

from search.config import SearchConfig
from search.hit_check.config import HitCheckConfig
from search.hit_check.protocol import HitCheck, check_many
from search.localizer import BoxXYXY
from seal.core.geometry import iou_xyxy


@dataclass
class CheckedBox:
    box_xyxy: BoxXYXY
    score: float
    """The localizer's score of the box."""
    probability: float | None
    """The hit check's probability; None when it abstained or its budget was spent."""


class HitCheckState:
    """The hit-check state of one target's search (rejected boxes, calls, time)."""

    def __init__(self, hit_check: HitCheck, target: str, cfg: SearchConfig, check_cfg: HitCheckConfig) -> None:
        self.hit_check, self.target, self.cfg, self.hcfg = hit_check, target, cfg, check_cfg
        self.rejected: list[CheckedBox] = []
        self.accepted: list[CheckedBox] = []  # confident hits accepted (or trusted), in visit order
        self.compared: list[CheckedBox] = []  # compare_rejected: rejected confident hits above the floor
        self.calls = 0
        self.unbudgeted_calls = 0  # boxes the root check and prefetch read (outside max_calls)
        self.batched = hasattr(hit_check, "check_many")  # reads many boxes in one pass
        self.read: dict[BoxXYXY, float | None] = {}  # batched verdicts by box, read before the visit
        self.seconds = 0.0
        self._forwards0 = hit_check.stats().forwards

    @property
    def forwards(self) -> int:
        """Passes of the check's model during this search (a batch of boxes is one)."""
        return self.hit_check.stats().forwards - self._forwards0

    def prefetch(self, detections: Iterable[tuple[Iterable[BoxXYXY], Iterable[float]]],
                 extra: Iterable[tuple[Iterable[BoxXYXY], Iterable[float]]] = ()) -> None:
        """A batched check reads the confident boxes of nodes just located (``(boxes, scores)`` per
        node, at most ``hit_check.per_node`` each), and every box of ``extra`` (the root's for
        :meth:`root_hits`), in one pass outside ``hit_check.max_calls``; their visits then use these
        verdicts instead of a pass each. Rejected confident boxes are remembered at once."""
        if not self.batched:
            return
        pairs: dict[BoxXYXY, float] = {}
        for boxes, scores in detections:
            pairs.update([(tuple(float(v) for v in b), float(s)) for b, s in zip(boxes, scores)  # type: ignore[misc]
                          if s > self.cfg.confidence_high][:self.hcfg.per_node])
        confident = set(pairs)
        for boxes, scores in extra:
            pairs.update((tuple(float(v) for v in b), float(s)) for b, s in zip(boxes, scores))  # type: ignore[misc]
        self._read(list(pairs.items()), budgeted=False, remember=confident)  # type: ignore[arg-type]

    def root_hits(self, boxes: Iterable[BoxXYXY], scores: Iterable[float]) -> list[CheckedBox]:
        """``search.root_check``: the root's first ``root_check`` boxes (best first) read in one batch;
        the accepted one (probability ``>= root_check_threshold``, the most probable), or none.
        Nothing is remembered as rejected (deeper nodes see these objects closer, under the usual
        rules), and the batch is outside ``hit_check.max_calls``, which keeps its calls for them;
        its boxes count in ``calls`` all the same."""
        pairs = [(tuple(float(v) for v in b), float(s)) for b, s in zip(boxes, scores)][:self.cfg.root_check]
        probs = self._read(pairs, budgeted=False, remember=set())  # type: ignore[arg-type]  (prefetch may have)
        hits = [CheckedBox(b, s, p) for (b, s), p in zip(pairs, probs)  # type: ignore[arg-type]
                if p is not None and p >= self.cfg.root_check_threshold]
        hits.sort(key=lambda v: -rank(v, self.hcfg.threshold))
        self.accepted += hits[:1]
        return hits[:1]

    def confident_hits(self, boxes: Iterable[BoxXYXY], scores: Iterable[float]) -> tuple[list[CheckedBox], float]:
        """The accepted boxes among a node's confident ones (best first; ``select: first``: only the
        first accepted, ``best``: every accepted one of the ``hit_check.per_node`` checked), and the
        highest probability the check gave at this node (-1.0 if it was not asked). A box of an
        object already accepted (IoU ``> nms_iou``) is not asked about again."""
        seen, hits = -1.0, []
        for box, score, p in self._verdicts(boxes, scores):
            if p is not None:
                seen = max(seen, p)
            if p is None or p >= self.hcfg.threshold:
                hits.append(CheckedBox(box, float(score), p))  # type: ignore[arg-type]
                self.accepted.append(hits[-1])
                if self.cfg.selection(checked=True) == "first":
                    break
            elif self.cfg.compare_rejected and p >= self.hcfg.floor:
                hits.append(CheckedBox(box, score, p))  # type: ignore[arg-type]
                self.compared.append(hits[-1])
        return hits, seen

    def _verdicts(self, boxes: Iterable[BoxXYXY],
                  scores: Iterable[float]) -> Iterator[tuple[BoxXYXY, float, float | None]]:
        """``(box, score, probability)`` of the node's confident boxes the check is asked about, best
        first, at most ``hit_check.per_node``, skipping objects already judged. A check with
        ``check_many`` reads them in one pass; another one box at a time, lazily (the caller stops
        asking at the first accepted box), skipping a box of an object it has just rejected."""
        confident = [(tuple(float(v) for v in b), float(s)) for b, s in zip(boxes, scores)
                     if s > self.cfg.confidence_high]
        if self.batched:
            pending = [(b, s) for b, s in confident if b in self.read or (
                not self._near(b, self.rejected) and not self._near(b, self.accepted))][:self.hcfg.per_node]  # type: ignore
            yield from ((b, s, p) for (b, s), p in zip(pending, self._read(pending)))  # type: ignore[misc]
            return
        asked = 0
        for box, score in confident:
            if asked >= self.hcfg.per_node:
                return
            if self._near(box, self.rejected) or self._near(box, self.accepted):  # type: ignore[arg-type]
                continue
            asked += 1
            yield box, score, self._ask(box, score)  # type: ignore[misc]

    def candidates(self) -> list[CheckedBox]:
        """The confident boxes the answer is chosen from: the accepted ones, and with
        ``compare_rejected`` the rejected ones with probability ``>= hit_check.floor`` (confident boxes
        only: the fallback's rejected boxes are not)."""
        return self.accepted + self.compared

    def fallback(self, candidates: Iterable[tuple[BoxXYXY, float]]) -> CheckedBox | None:
        """The anytime fallback among ``(box, score)`` candidates (any order): the best-scoring box
        ``>= confidence_low`` the check accepts, within ``hit_check.fallback_top`` distinct objects."""
        ranked = sorted(((tuple(float(v) for v in b), float(s)) for b, s in candidates if s >= self.cfg.confidence_low),
                        key=lambda c: -c[1])
        tried: list[tuple[BoxXYXY, float]] = []
        for box, score in ranked:
            if len(tried) >= self.hcfg.fallback_top:
                break
            if self._near(box, self.rejected) or _overlaps(box, [b for b, _ in tried], self.cfg.nms_iou):  # type: ignore
                continue
            tried.append((box, score))  # type: ignore[arg-type]
            if not self.batched:
                p = self._ask(box, score)  # type: ignore[arg-type]
                if p is None or p >= self.hcfg.threshold:
                    return CheckedBox(box, score, p)  # type: ignore[arg-type]
        if self.batched:  # the same boxes (distinct objects: one's rejection never skips another), one pass
            for (box, score), p in zip(tried, self._read(tried)):
                if p is None or p >= self.hcfg.threshold:
                    return CheckedBox(box, score, p)  # type: ignore[arg-type]
        return self.best_rejected()

    def best_rejected(self) -> CheckedBox | None:
        """The most probable rejected box with probability ``>= hit_check.floor``; None when the floor is
        0 (off) or no rejected box reaches it."""
        floor = self.hcfg.floor
        kept = [v for v in self.rejected if v.probability >= floor] if floor > 0 else []  # type: ignore[operator]
        return max(kept, key=lambda v: (v.probability, v.score)) if kept else None

    def _near(self, box: BoxXYXY, verdicts: list[CheckedBox]) -> bool:
        """Whether ``box`` is the object of one of ``verdicts`` (IoU ``> nms_iou``)."""
        return _overlaps(box, [v.box_xyxy for v in verdicts], self.cfg.nms_iou)

    def _read(self, pairs: list[tuple[BoxXYXY, float]], budgeted: bool = True,
              remember: set | None = None) -> list[float | None]:
        """The verdicts of ``(box, score)`` pairs from a check that has ``check_many``: the boxes not read
        yet in this search in one pass, the others from :attr:`read`. ``budgeted``: a box past
        ``hit_check.max_calls`` gets None (as in :meth:`_ask`; not stored); else the boxes count in
        ``unbudgeted_calls``. A rejected box is remembered (only those in ``remember`` when given)."""
        fresh = list({b: s for b, s in pairs if b not in self.read}.items())
        n = max(0, min(len(fresh), self.hcfg.max_calls - self.calls)) if budgeted else len(fresh)
        if n:
            t0 = time.perf_counter()
            try:
                probs = check_many(self.hit_check, self.target, [b for b, _ in fresh[:n]])
            finally:
                self.seconds += time.perf_counter() - t0
            if budgeted:
                self.calls += n
            else:
                self.unbudgeted_calls += n
            for (box, score), p in zip(fresh[:n], probs):
                p = None if p is None else _probability(p, self.hit_check)
                if p is not None and p < self.hcfg.threshold and (remember is None or box in remember):
                    self.rejected.append(CheckedBox(box, score, p))
                self.read[box] = p
        return [self.read.get(b) for b, _ in pairs]

    def _ask(self, box: BoxXYXY, score: float) -> float | None:
        """One hit-check call (None once the budget is spent); a rejection is remembered."""
        if self.calls >= self.hcfg.max_calls:
            return None
        t0 = time.perf_counter()
        try:
            p = self.hit_check.check(self.target, box)
        finally:
            self.seconds += time.perf_counter() - t0
        self.calls += 1
        if p is None:
            return None
        p = _probability(p, self.hit_check)
        if p < self.hcfg.threshold:
            self.rejected.append(CheckedBox(box, score, float(p)))
        return float(p)


def rank(verdict: CheckedBox, threshold: float) -> float:
    """``select: best``'s order of candidates (:func:`rank_key` of the verdict's score and probability)."""
    return rank_key(verdict.score, verdict.probability, threshold)


def rank_key(score: float, probability: float | None, threshold: float) -> float:
    """Probability x localizer score; a box the check did not judge (None) counts with ``threshold``
    (``hit_check.threshold``)."""
    return (threshold if probability is None else probability) * score


def _probability(p: object, hit_check: HitCheck) -> float:
    """``p`` as a float, or a RuntimeError naming the check when it is not a probability."""
    if not (isinstance(p, (int, float)) and math.isfinite(p) and 0.0 <= p <= 1.0):
        raise RuntimeError(f"hit check {getattr(hit_check, 'name', '?')!r}: check returned {p!r} "
                           "(expected a probability in [0, 1] or None)")
    return float(p)


def _overlaps(box: BoxXYXY, others: list[BoxXYXY], iou: float) -> bool:
    return bool(others) and float(iou_xyxy(box, others).max()) > iou
