"""``VQAWordCheck``: the VQA LLM reads a box's named words back, so the search can tell the target
from its near misses.

A target name such as "dotted cross" holds words of known kinds: "dotted" (a pattern) and "cross"
(a shape, the head noun). For each word of a checked kind (``hit_check.kinds``) the check shows the
VQA LLM the global view plus one crop of the box, laid out by :mod:`vwm.layout` exactly as the
answer step does, and asks that word's question with the word left out of the name: "What is the
pattern of the cross?", "What is the shape of the dotted object?" (a noun kind's word is replaced by
``hit_check.placeholder_noun``; the VWM entry carries the same name, so the prompt never gives the
word away). Every value of the kind is scored as the reply ("The cross is dotted.", ...) by its
summed token log-likelihood; the probability of the named value, normalised over the values, is
that word's check, and the answer is the product over the words. A name with nothing to check gets
None (the search then trusts the localizer).

Cost: one prompt per checked word (the global view and one crop: their vision tokens are counted
in :meth:`VQAWordCheck.stats`), the values scored in one batched forward.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol, Sequence

import numpy as np

from search.hit_check.config import HitCheckConfig
from search.hit_check.protocol import HitCheckStats
from seal.core.crops import extract_crop
from seal.core.geometry import Frame
from seal.core.image_source import ImageSource
from vwm.budget import VisionBudget, VisionBudgetConfig
from vwm.layout import VisualWorkingMemory, VWMConfig, VWMEntry


class OptionScorer(Protocol):
    """What the check needs of a VQA LLM (:class:`seal.vqa.model.VQAModel`)."""

    processor: Any
    vwm_config: VWMConfig

    def score_options(self, image: Any, question: str, options: Sequence[str], vwm: VisualWorkingMemory | None,
                      reduce: str = "mean") -> list[float]: ...


class VQAWordCheck:
    """The hit check of a VQA LLM (any :class:`OptionScorer`, e.g. :class:`seal.vqa.model.VQAModel`).

    Args:
        vqa: the VQA LLM (its ``vwm_config`` sets the crop, unless ``cfg.crop_scale`` /
            ``cfg.min_context_px`` do).
        cfg: the ``hit_check`` section as this model is asked (:meth:`HitCheckConfig.asked_as`).
        budget: the vision budget whose ``full`` view is the global image (the agent's view); None:
            the default budget with the model's processor (exact token counts).
    """

    name = "vqa_words"

    def __init__(self, vqa: OptionScorer, cfg: HitCheckConfig | None = None,
                 budget: VisionBudget | None = None) -> None:
        self.vqa, self.cfg = vqa, cfg or HitCheckConfig()
        self.words = self.cfg.words()
        self.budget = budget or VisionBudget(VisionBudgetConfig(), vqa.processor)
        self._image = None
        self._view = None
        self._letterboxed = None  # the view as every check's prompt shows it, made once per image
        self._stats = HitCheckStats()

    def set_image(self, image: ImageSource) -> None:
        self._image = image.image
        self._view = self.budget.resize(image.image, "full")
        self._letterboxed = VisualWorkingMemory(self._view, config=self.vqa.vwm_config).view()
        self._stats = HitCheckStats()

    def stats(self) -> HitCheckStats:
        return replace(self._stats)

    def check(self, target: str, box_xyxy: Sequence[float]) -> float | None:
        if self._image is None:
            raise RuntimeError("VQAWordCheck.check before set_image")
        checks = self.cfg.checks(target)
        self._stats.calls += 1
        if not checks:
            self._stats.abstained += 1
            return None
        crop, view_box = self._crop(box_xyxy)
        p = 1.0
        for kind, word, asked in checks:
            self._stats.vision_tokens += self.budget.tokens_for(self._letterboxed) + self.budget.tokens_for(crop)
            self._stats.llm_calls += 1
            self._stats.forwards += 1
            entry = VWMEntry(name=asked, found=True, box_xyxy=view_box, score=1.0, crop=crop)
            vwm = VisualWorkingMemory(global_image=self._view, entries=[entry], config=self.vqa.vwm_config,
                                      global_view=self._letterboxed)
            p *= self.value_probabilities(vwm, asked, kind)[word]
        return float(p)

    def value_probabilities(self, vwm: VisualWorkingMemory, noun: str, kind: str) -> dict[str, float]:
        """P(value) over ``kind``'s values as the reply about ``noun`` in ``vwm``'s prompt."""
        values = self.words.attributes[kind]
        question = self.words.questions[kind].format(name=noun)
        replies = [self.words.replies[kind].format(name=noun, value=v) for v in values]
        logp = np.asarray(self.vqa.score_options(None, question, replies, vwm, reduce="sum"), dtype=np.float64)
        prob = np.exp(logp - logp.max())
        return dict(zip(values, (prob / prob.sum()).tolist()))

    def _crop(self, box_xyxy: Sequence[float]) -> tuple[Any, tuple[float, float, float, float]]:
        """The VWM crop of ``box_xyxy`` (full-image pixels, cut once per box for all its words) and
        the box in the global view's pixels."""
        assert self._image is not None and self._view is not None
        vcfg = self.vqa.vwm_config
        scale = vcfg.crop_scale if self.cfg.crop_scale is None else self.cfg.crop_scale
        min_side = vcfg.min_context_px if self.cfg.min_context_px is None else self.cfg.min_context_px
        crop = extract_crop(self._image, box_xyxy, scale, min_side, vcfg.crop_side_px)
        w, h = self._image.size
        frame = Frame((0.0, 0.0, float(w), float(h)), *self._view.size, letterbox=False)
        return crop.image, tuple(float(v) for v in frame.full_to_input_xyxy(box_xyxy))  # type: ignore[return-value]
