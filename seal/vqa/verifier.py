"""``AttributeVerifier``: the VQA LLM reads a box's named words back, so the search can tell the
target from its near misses.

A target name such as "dotted cross" holds words of known kinds: "dotted" (a pattern) and "cross"
(a shape, the head noun). For each of them the verifier shows the VQA LLM the global view plus one
crop of the box, laid out by :mod:`vwm.layout` exactly as the answer step does, and asks that word's
question with the word left out of the name: "What is the pattern of the cross?", "What is the
shape of the dotted object?" (a noun kind's word is replaced by ``placeholder_noun``; the VWM entry
carries the same name, so the prompt never gives the word away). Every value of the kind is scored
as the reply ("The cross is dotted.", "The cross is striped.", ...) by its summed token
log-likelihood; the probability of the named value, normalised over the values, is that word's
check, and the verdict is the product over the words. A name with nothing to check gets None (the
search then trusts the localizer).

A near miss differs from the target in one word; the localizer's wrong hits are near misses of the
words it reads worst. The tiny VSM sees a ~30 px object as 2 x 2 cells of a 256 px patch, while the
VQA LLM sees it at crop scale.

Cost: one prompt per checked word (the global view and one crop: their vision tokens are counted in
:meth:`AttributeVerifier.stats`), the values scored in one batched forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from search.verifier import VerifierStats
from seal.errors import ConfigError
from vwm.budget import VisionBudget, VisionBudgetConfig
from vwm.crops import extract_crop
from vwm.layout import VisualWorkingMemory, VWMEntry

if TYPE_CHECKING:
    from PIL import Image

    from search.config import SearchConfig
    from search.image_source import ImageSource
    from search.localizer import Localizer
    from search.verifier import Verifier
    from seal.config import Config
    from seal.vqa.model import VQAModel


KNOWN_KINDS = ("color", "pattern", "shape")
"""The attribute kinds whose words the default ``verifier`` section knows (SynthVStar's)."""

DEFAULT_KINDS = ("color", "pattern")
"""The kinds checked when neither ``verifier.kinds`` nor the checker's ``verifier.yaml`` names them:
what a VQA model trained to answer (not to check) reads. The shipped checker adds the shape
("What is the shape of the dotted object?"; :mod:`seal.vqa.checker`, README "Measured")."""


def _synth_vocabularies() -> dict[str, list[str]]:
    from eval.synth.scene import VALUES

    return {k: list(VALUES[k]) for k in KNOWN_KINDS}


def _synth_templates(which: str) -> dict[str, str]:
    from eval.synth.questions import QUESTIONS, SENTENCES

    table = QUESTIONS if which == "question" else SENTENCES
    return {k: table[k] for k in KNOWN_KINDS}


def _identity(image: "Image.Image") -> "Image.Image":
    return image


def _rot180(image: "Image.Image") -> "Image.Image":
    return image.rotate(180)


def _hflip(image: "Image.Image") -> "Image.Image":
    from PIL import ImageOps

    return ImageOps.mirror(image)


def _vflip(image: "Image.Image") -> "Image.Image":
    from PIL import ImageOps

    return ImageOps.flip(image)


CROP_VIEWS: dict[str, Callable[["Image.Image"], "Image.Image"]] = {
    "identity": _identity, "hflip": _hflip, "vflip": _vflip, "rot180": _rot180}
"""``verifier.views``: name -> the crop as that view shows it."""


@dataclass
class VerifierConfig:
    """How the VQA LLM checks a box (``verifier`` section; defaults: SynthVStar's words and phrasing,
    the questions the shipped VQA model was trained on)."""

    enabled: bool = True
    """Check the search's confident hits with the VQA LLM (``seal ask`` / ``seal search`` / evaluation)."""
    model_path: str | None = None
    """The VQA LLM that checks (a checkpoint directory, looked up as ``agent.vqa_path`` is); None =
    the checker the answering model's ``verifier.yaml`` names, else the answering model itself
    (:mod:`seal.vqa.checker`). ``seal search --verifier-model DIR`` overrides it."""
    crop_scale: float | None = None
    """Region side / box side of the checked crop; None = the checker's ``verifier.yaml``, else
    ``vwm.crop_scale`` (the answer layout's). A checker trained on other crops is asked with those."""
    min_context_px: int | None = None
    """Minimum region side of the checked crop (full-image px); None = the checker's
    ``verifier.yaml``, else ``vwm.min_context_px``."""
    localizers: list[str] = field(default_factory=lambda: ["vsm"])
    """Localizers whose hits are checked (the ``oracle`` simulates ground truth: left unchecked, so
    the simulation figures stay what they measure)."""
    attributes: dict[str, list[str]] = field(default_factory=_synth_vocabularies)
    """Attribute kind -> its values (the words a target name may hold)."""
    questions: dict[str, str] = field(default_factory=lambda: _synth_templates("question"))
    """Attribute kind -> question about ``{name}`` (the noun)."""
    replies: dict[str, str] = field(default_factory=lambda: _synth_templates("reply"))
    """Attribute kind -> reply sentence with ``{name}`` and ``{value}``."""
    kinds: list[str] | None = None
    """The attribute kinds that are checked (the others' words are still known, e.g. as the noun);
    None = the checker's ``verifier.yaml``, else :data:`DEFAULT_KINDS`."""
    noun_kinds: list[str] | None = None
    """Kinds whose word is the name's head noun: asking them names the object by its other words
    plus ``placeholder_noun``; None = the checker's ``verifier.yaml``, else none."""
    placeholder_noun: str = "object"
    contrast: dict[str, list[str]] = field(default_factory=dict)
    """Kind -> values the search model itself checks before the VQA LLM does
    (:class:`search.contrast.ContrastVerifier`): the box is located again under the name with that
    word swapped for each other value; {} = off (the default: with the tiny VSM it did not pay,
    README; ``configs/verifier_contrast.yaml`` turns it on for shapes)."""
    contrast_margin: float = 0.6
    """The contrast check passes when the target's score of the box is >= this x the best variant's."""
    contrast_window: float = 1.25
    """Side of the contrast check's window, in leaf sides (at least twice the box)."""
    word_score: str = "probability"
    """A word's check: ``probability`` (the named value's probability over the kind's values) or
    ``ratio`` (that probability over the most probable value's: 1 when the named value wins, so a
    weak but informative reader, e.g. of 8 shapes, accepts its best guess and rejects a clear other)."""

    crop_check: bool = True
    """Check the hits with the search model's crop matcher too (its checkpoint's ``crop_check/``
    folder, :mod:`search.vsm.crop_check`; a conv read of the box crop, no LLM call), before the
    VQA LLM; the check is the lowest of the members' probabilities (:class:`search.verifier.AllOf`)."""
    llm_check: str = "auto"
    """Check the hits with the VQA LLM (:class:`AttributeVerifier`): ``auto`` = only when the crop
    matcher does not (on SynthVStar's validation hits it ranked the target first wherever the target
    was among them, and the tiny VQA checker's shape errors only pulled the lower of the two down;
    README "Measured", item 21), ``always`` = after the crop matcher, ``never``."""

    def wants_llm(self, crop_checked: bool) -> bool:
        """Whether the VQA LLM checks, given whether the crop matcher does."""
        return self.llm_check == "always" or (self.llm_check == "auto" and not crop_checked)

    def crop_checks(self, localizer: "Localizer | None") -> bool:
        """Whether ``localizer``'s hits are read by its crop matcher (it carries one, ``crop_check`` on)."""
        return self.crop_check and getattr(localizer, "crop_matcher", None) is not None

    views: list[str] = field(default_factory=lambda: ["identity"])
    """The crop is read once per view (:data:`CROP_VIEWS`: ``identity``, ``hflip``, ``vflip``,
    ``rot180``) and the value distributions are averaged: a test-time augmentation costing one LLM
    call per view and word. The names of colours, patterns and shapes do not change under these."""

    def applies_to(self, localizer_name: str) -> bool:
        """Whether hits of the localizer called ``localizer_name`` are checked."""
        return self.enabled and localizer_name in self.localizers

    def __post_init__(self) -> None:
        self.localizers = [str(v) for v in self.localizers]
        if self.model_path is not None and not str(self.model_path).strip():
            raise ConfigError("verifier.model_path: expected a directory or null, found an empty string")
        if (self.crop_scale is not None and self.crop_scale < 1.0) or (self.min_context_px is not None
                                                                      and self.min_context_px < 1):
            raise ConfigError(f"verifier.crop_scale / min_context_px: expected >= 1 (the crop holds the box) / >= 1 px "
                              f"or null, found {self.crop_scale} / {self.min_context_px}")
        self.attributes = {str(k): [str(v).lower() for v in vals] for k, vals in dict(self.attributes).items()}
        for kind, values in self.attributes.items():
            if len(values) < 2 or len(set(values)) != len(values):
                raise ConfigError(f"verifier.attributes.{kind}: expected >= 2 distinct values, found {values}")
            for table, fields in (("questions", ("{name}",)), ("replies", ("{name}", "{value}"))):
                text = getattr(self, table).get(kind)
                if not isinstance(text, str) or any(f not in text for f in fields):
                    raise ConfigError(f"verifier.{table}.{kind}: expected a template holding {' and '.join(fields)}, "
                                      f"found {text!r}")
        words = [v for vals in self.attributes.values() for v in vals]
        if len(set(words)) != len(words):
            raise ConfigError("verifier.attributes: a word belongs to two attribute kinds")
        self.views = [str(v) for v in self.views]
        if not self.views or len(set(self.views)) != len(self.views) or not set(self.views) <= set(CROP_VIEWS):
            raise ConfigError(f"verifier.views: expected distinct views among {list(CROP_VIEWS)}, found {self.views}")
        if self.word_score not in ("probability", "ratio"):
            raise ConfigError(f"verifier.word_score: expected 'probability' or 'ratio', found {self.word_score!r}")
        self.contrast = {str(k): [str(v).lower() for v in vals] for k, vals in dict(self.contrast).items()}
        contrasted = [v for vals in self.contrast.values() for v in vals]
        if len(set(contrasted)) != len(contrasted) or any(len(v) < 2 for v in self.contrast.values()):
            raise ConfigError(f"verifier.contrast: expected kinds of >= 2 values, no word in two kinds; found {self.contrast}")
        if self.contrast_margin <= 0 or not 0.5 <= self.contrast_window <= 4.0:
            raise ConfigError(f"verifier.contrast_margin / contrast_window: expected > 0 / 0.5..4 leaf sides, found "
                              f"{self.contrast_margin} / {self.contrast_window}")
        if self.llm_check not in ("auto", "always", "never"):
            raise ConfigError(f"verifier.llm_check: expected auto, always or never, found {self.llm_check!r}")
        if self.kinds is not None:
            self.kinds = [str(k) for k in self.kinds]
        if not self.checked_kinds or not set(self.checked_kinds) <= set(self.attributes):
            raise ConfigError(f"verifier.kinds: expected attribute kinds ({sorted(self.attributes)}), found {self.kinds}")
        if self.noun_kinds is not None:
            self.noun_kinds = [str(k) for k in self.noun_kinds]
        if not set(self.noun_kinds or ()) <= set(self.attributes) or not self.placeholder_noun.strip():
            raise ConfigError(f"verifier.noun_kinds: expected attribute kinds ({sorted(self.attributes)}) and a "
                              f"placeholder_noun, found {self.noun_kinds} / {self.placeholder_noun!r}")

    @property
    def checked_kinds(self) -> list[str]:
        """``kinds``, or :data:`DEFAULT_KINDS` when unset."""
        return list(DEFAULT_KINDS) if self.kinds is None else self.kinds

    def checks(self, name: str) -> list[tuple[str, str, str]]:
        """``[(kind, word, asked_name), ...]``: each word of ``name`` of a checked kind (``kinds``) and
        the name its question uses. With ``kinds`` [pattern, shape] and ``noun_kinds`` [shape],
        ``checks("dotted cross") == [("pattern", "dotted", "cross"), ("shape", "cross", "dotted object")]``;
        a word whose question would name nothing is not checked."""
        kind_of = {v: k for k, vals in self.attributes.items() for v in vals}
        words = name.lower().split()
        out = []
        for i, w in enumerate(words):
            if kind_of.get(w) not in self.checked_kinds:
                continue
            rest = words[:i] + words[i + 1:]
            if not rest:
                continue
            asked = " ".join(rest + [self.placeholder_noun] if kind_of[w] in (self.noun_kinds or ()) else rest)
            out.append((kind_of[w], w, asked))
        return out


class AttributeVerifier:
    """A :class:`search.verifier.Verifier` backed by a :class:`seal.vqa.model.VQAModel`.

    Args:
        vqa: the VQA LLM (its ``vwm_config`` sets the crop, unless ``cfg.crop_scale`` /
            ``cfg.min_context_px`` do).
        cfg: the words and templates.
        budget: the vision budget whose ``full`` view is the global image (the agent's view); None:
            the default budget with the model's processor (exact token counts).
    """

    name = "vqa_attributes"

    def __init__(self, vqa: "VQAModel", cfg: VerifierConfig | None = None, budget: VisionBudget | None = None) -> None:
        self.vqa, self.cfg = vqa, cfg or VerifierConfig()
        self.budget = budget or VisionBudget(VisionBudgetConfig(), vqa.processor)
        self._image = None
        self._view = None
        self._letterboxed = None  # the view as every check's prompt shows it, made once per image
        self._stats = VerifierStats()

    @classmethod
    def from_config(cls, vqa: "VQAModel", cfg: "Config", verifier: VerifierConfig | None = None) -> "AttributeVerifier":
        """The check by ``vqa`` as the root config sets it (``verifier``: default ``cfg.verifier``,
        or the plan's resolved section, :func:`seal.vqa.checker.plan_checker`; the global view at
        ``vision_budget``'s full level, token counts from the model's processor)."""
        return cls(vqa, verifier or cfg.verifier, VisionBudget(cfg.vision_budget, vqa.processor))

    def set_image(self, image: "ImageSource") -> None:
        self._image = image.image
        self._view = self.budget.resize(image.image, "full")
        self._letterboxed = VisualWorkingMemory(self._view, config=self.vqa.vwm_config).view()
        self._stats = VerifierStats()

    def stats(self) -> VerifierStats:
        return replace(self._stats)

    def verify(self, target: str, box_xyxy: Sequence[float]) -> float | None:
        if self._image is None:
            raise RuntimeError("AttributeVerifier.verify before set_image")
        checks = self.cfg.checks(target)
        self._stats.calls += 1
        if not checks:
            self._stats.abstained += 1
            return None
        crop, view_box = self._crop(box_xyxy)
        crops = [CROP_VIEWS[v](crop) for v in self.cfg.views]
        p = 1.0
        for kind, word, asked in checks:
            dists = []  # one value distribution per view
            for image in crops:
                self._stats.vision_tokens += self.budget.tokens_for(self._view) + self.budget.tokens_for(image)
                self._stats.llm_calls += 1
                entry = VWMEntry(name=asked, found=True, box_xyxy=view_box, score=1.0, crop=image)
                vwm = VisualWorkingMemory(global_image=self._view, entries=[entry], config=self.vqa.vwm_config,
                                          global_view=self._letterboxed)
                dists.append(self.value_probabilities(vwm, asked, kind))
            probs = {v: float(np.mean([d[v] for d in dists])) for v in dists[0]}
            p *= probs[word] / (max(probs.values()) if self.cfg.word_score == "ratio" else 1.0)
        return float(p)

    def value_probabilities(self, vwm: VisualWorkingMemory, noun: str, kind: str) -> dict[str, float]:
        """P(value) over ``kind``'s values as the reply about ``noun`` in ``vwm``'s prompt."""
        values = self.cfg.attributes[kind]
        question = self.cfg.questions[kind].format(name=noun)
        replies = [self.cfg.replies[kind].format(name=noun, value=v) for v in values]
        logp = np.asarray(self.vqa.score_options(None, question, replies, vwm, reduce="sum"), dtype=np.float64)
        prob = np.exp(logp - logp.max())
        return dict(zip(values, (prob / prob.sum()).tolist()))

    def _crop(self, box_xyxy: Sequence[float]) -> tuple["Image.Image", tuple[float, float, float, float]]:
        """The VWM crop of ``box_xyxy`` (full-image pixels, cut once per box for all its words) and
        the box in the global view's pixels."""
        from search.geometry import Frame

        assert self._image is not None and self._view is not None
        vcfg = self.vqa.vwm_config
        scale = vcfg.crop_scale if self.cfg.crop_scale is None else self.cfg.crop_scale
        min_side = vcfg.min_context_px if self.cfg.min_context_px is None else self.cfg.min_context_px
        crop = extract_crop(self._image, box_xyxy, scale, min_side, vcfg.crop_side_px)
        w, h = self._image.size
        frame = Frame((0.0, 0.0, float(w), float(h)), *self._view.size, letterbox=False)
        return crop.image, tuple(float(v) for v in frame.full_to_input_xyxy(box_xyxy))  # type: ignore[return-value]


def hit_checker(cfg: VerifierConfig, search_cfg: "SearchConfig", localizer: "Localizer",
                attributes: AttributeVerifier | None) -> "Verifier | None":
    """The verifier of the search's hits for ``localizer``: the contrast check (``cfg.contrast``, the
    localizer itself, cheap), the search model's crop matcher (``cfg.crop_check``, when the localizer
    carries one), then the VQA LLM's ``attributes`` check (``cfg.llm_check``: by default only without
    the crop matcher), each optional; None when the section does not apply to this localizer or
    nothing is left."""
    from search.contrast import ContrastVerifier
    from search.verifier import AllOf

    if not cfg.applies_to(localizer.name):
        return None
    members: list = []
    if cfg.contrast:
        members.append(ContrastVerifier(localizer, cfg.contrast, search_cfg, cfg.contrast_margin, cfg.contrast_window))
    crop_checked = cfg.crop_checks(localizer)
    if crop_checked:
        from search.vsm.crop_check import CropCheckVerifier

        members.append(CropCheckVerifier(localizer.crop_matcher))  # type: ignore[attr-defined]
    if attributes is not None and cfg.wants_llm(crop_checked):
        members.append(attributes)
    if not members:
        return None
    return members[0] if len(members) == 1 else AllOf(members, search_cfg.verify_threshold)
