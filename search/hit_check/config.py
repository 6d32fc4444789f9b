"""``HitCheckConfig``: the ``hit_check`` section, every knob of "is this box really the target?".

Three looks, each optional, cheapest first:

1. ``zoom``: a confident box found above the leaves is located again on a leaf-scale window around
   it (one localizer call); at coarse nodes a target is a few input pixels and near misses fire alike.
2. ``crop_matcher``: the search model's crop matcher reads the box's context crop (no LLM call).
3. ``vqa``: the VQA LLM reads the target's named words (colour, pattern, shape) back from a crop.

The engine asks about confident boxes and fallback candidates only (:mod:`search.hit_check.rules`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Literal

from seal.core.errors import ConfigError

KNOWN_KINDS = ("color", "pattern", "shape")
"""The attribute kinds of the default vocabulary (SynthVStar's)."""

DEFAULT_KINDS = ("color", "pattern")
"""The kinds the VQA LLM checks when neither ``hit_check.kinds`` nor the checking model's manifest
names them: what a VQA model trained to answer (not to check) reads."""

ASKING_KEYS = ("crop_scale", "min_context_px", "kinds", "noun_kinds")
"""The fields that say how a checking VQA model must be asked: a checkpoint trained to check
records them in its manifest (``config.hit_check``); the section's values win when set."""


@dataclass
class HitCheckConfig:
    """The ``hit_check`` section."""

    enabled: bool = True
    """Check the search's confident boxes (``zoom`` is separate: it is the localizer's own look)."""
    localizers: list[str] = field(default_factory=lambda: ["vsm"])
    """Localizers whose boxes are checked (the ``oracle`` simulates ground truth: left unchecked, so
    the simulation figures stay what they measure)."""
    zoom: float = 1.25
    """A confident box at a node above the leaves is located again on a square window of ``zoom`` x
    the leaf side centred on it (one call); that window's detection replaces the node's. 0 = off (the
    reference V*: trust any node's score)."""
    crop_matcher: bool = True
    """The search model's crop matcher reads the box (when its checkpoint has one)."""
    vqa: Literal["auto", "always", "never"] = "auto"
    """The VQA LLM reads the box's named words: ``auto`` = only when no crop matcher does, ``always``
    = after the crop matcher, ``never``."""
    vqa_path: str | None = None
    """The VQA LLM that checks (a checkpoint directory); None = the answering model."""
    threshold: float = 0.5
    """A confident box stops the search only if the check gives it at least this probability; a
    rejected box is not returned (but see ``floor``), and boxes overlapping it (IoU >
    ``search.nms_iou``) are not asked about again."""
    floor: float = 0.05
    """When no box was accepted, the most probable rejected one with at least this probability is the
    fallback after all; 0 = off."""
    max_calls: int = 16
    """Boxes checked per target; once spent, boxes are trusted as without a check."""
    per_node: int = 2
    """Confident boxes of one node checked, best first (a patch may hold a near miss and the target)."""
    fallback_top: int = 3
    """Without an accepted confident box, at most this many of the visited nodes' best boxes scoring
    ``>= search.confidence_low`` are checked, best first; the first one accepted is the fallback."""

    crop_scale: float | None = None
    """VQA check: region side / box side of the crop; None = the checking model's manifest, else the
    answer layout's ``vwm.crop_scale``."""
    min_context_px: int | None = None
    """VQA check: minimum region side of the crop (full-image px); None = as ``crop_scale``."""
    kinds: list[str] | None = None
    """VQA check: the attribute kinds read; None = the checking model's manifest, else
    :data:`DEFAULT_KINDS`."""
    noun_kinds: list[str] | None = None
    """VQA check: kinds whose word is the name's head noun (asked as ``placeholder_noun``)."""
    placeholder_noun: str = "object"
    vocabulary: dict[str, Any] | None = None
    """VQA check: ``{"attributes": {kind: [values]}, "questions": {kind: "... {name} ..."},
    "replies": {kind: "... {name} ... {value} ..."}}``; None = SynthVStar's words and phrasing, the
    questions the shipped VQA model was trained on."""

    def __post_init__(self) -> None:
        self.localizers = [str(v) for v in self.localizers]
        if self.vqa not in ("auto", "always", "never"):
            raise ConfigError(f"hit_check.vqa: expected auto, always or never, found {self.vqa!r}")
        if self.vqa_path is not None and not str(self.vqa_path).strip():
            raise ConfigError("hit_check.vqa_path: expected a directory or null, found an empty string")
        if self.zoom != 0 and not 0.5 <= self.zoom <= 4.0:
            raise ConfigError(f"hit_check.zoom: expected 0 (off) or 0.5..4 leaf sides, found {self.zoom}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"hit_check.threshold: expected 0..1, found {self.threshold}")
        if not 0.0 <= self.floor <= self.threshold:
            raise ConfigError(f"hit_check.floor: expected 0 <= floor <= threshold ({self.threshold}), "
                              f"found {self.floor}")
        if min(self.max_calls, self.fallback_top) < 0 or self.per_node < 1:
            raise ConfigError("hit_check.max_calls / fallback_top: expected >= 0, per_node: >= 1; found "
                              f"{self.max_calls} / {self.fallback_top} / {self.per_node}")
        if (self.crop_scale is not None and self.crop_scale < 1.0) or (self.min_context_px is not None
                                                                      and self.min_context_px < 1):
            raise ConfigError(f"hit_check.crop_scale / min_context_px: expected >= 1 (the crop holds the box) / "
                              f">= 1 px or null, found {self.crop_scale} / {self.min_context_px}")
        if not self.placeholder_noun.strip():
            raise ConfigError("hit_check.placeholder_noun: expected a word, found an empty string")
        words = self._words = Vocabulary.from_config(self.vocabulary)  # validated once, here
        for name in ("kinds", "noun_kinds"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, [str(k) for k in value])
                if not set(getattr(self, name)) <= set(words.attributes):
                    raise ConfigError(f"hit_check.{name}: expected attribute kinds ({sorted(words.attributes)}), "
                                      f"found {value}")
        if self.kinds is not None and not self.kinds:
            raise ConfigError("hit_check.kinds: expected at least one kind or null, found []")

    def applies_to(self, localizer_name: str) -> bool:
        """Whether boxes of the localizer called ``localizer_name`` are checked."""
        return self.enabled and localizer_name in self.localizers

    def uses_vqa(self, crop_matched: bool) -> bool:
        """Whether the VQA LLM checks, given whether the crop matcher does."""
        return self.vqa == "always" or (self.vqa == "auto" and not crop_matched)

    def asked_as(self, model_settings: dict[str, Any]) -> "HitCheckConfig":
        """This section with its unset asking fields (:data:`ASKING_KEYS`) taken from the checking
        model's recorded settings (its manifest's ``config.hit_check``)."""
        fill = {k: model_settings[k] for k in ASKING_KEYS if model_settings.get(k) is not None
                and getattr(self, k) is None}
        return replace(self, **fill) if fill else self

    @property
    def checked_kinds(self) -> list[str]:
        """``kinds``, or :data:`DEFAULT_KINDS` when unset."""
        return list(DEFAULT_KINDS) if self.kinds is None else list(self.kinds)

    def words(self) -> "Vocabulary":
        """The vocabulary the VQA check asks with (``vocabulary`` or SynthVStar's), validated."""
        return self._words

    def checks(self, name: str) -> list[tuple[str, str, str]]:
        """``[(kind, word, asked_name), ...]``: each word of ``name`` of a checked kind and the name its
        question uses. With ``kinds`` [pattern, shape] and ``noun_kinds`` [shape],
        ``checks("dotted cross") == [("pattern", "dotted", "cross"), ("shape", "cross", "dotted object")]``;
        a word whose question would name nothing is not checked."""
        kind_of = self._words.kind_of()
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


@dataclass(frozen=True)
class Vocabulary:
    """The words a target name may hold, by kind, and how the VQA LLM is asked about each kind."""

    attributes: dict[str, list[str]]
    questions: dict[str, str]
    replies: dict[str, str]

    @classmethod
    def from_config(cls, data: dict[str, Any] | None) -> "Vocabulary":
        if data is None:
            return synth_vocabulary()
        unknown = sorted(set(data) - {"attributes", "questions", "replies"})
        if unknown:
            raise ConfigError(f"hit_check.vocabulary: unknown keys {unknown} (known: attributes, questions, replies)")
        try:
            attributes = {str(k): [str(v).lower() for v in vals] for k, vals in dict(data["attributes"]).items()}
            voc = cls(attributes, {str(k): v for k, v in dict(data["questions"]).items()},
                      {str(k): v for k, v in dict(data["replies"]).items()})
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError("hit_check.vocabulary: expected attributes, questions and replies mappings "
                              f"({e})") from None
        voc.validate()
        return voc

    def validate(self) -> None:
        for kind, values in self.attributes.items():
            if len(values) < 2 or len(set(values)) != len(values):
                raise ConfigError(f"hit_check.vocabulary.attributes.{kind}: expected >= 2 distinct values, "
                                  f"found {values}")
            for table, fields in (("questions", ("{name}",)), ("replies", ("{name}", "{value}"))):
                text = getattr(self, table).get(kind)
                if not isinstance(text, str) or any(f not in text for f in fields):
                    raise ConfigError(f"hit_check.vocabulary.{table}.{kind}: expected a template holding "
                                      f"{' and '.join(fields)}, found {text!r}")
        words = [v for vals in self.attributes.values() for v in vals]
        if len(set(words)) != len(words):
            raise ConfigError("hit_check.vocabulary.attributes: a word belongs to two attribute kinds")

    def kind_of(self) -> dict[str, str]:
        return {v: k for k, vals in self.attributes.items() for v in vals}


@lru_cache(maxsize=1)
def synth_vocabulary() -> Vocabulary:
    """SynthVStar's colours, patterns and shapes with the question and reply templates the shipped
    VQA model was trained on."""
    from eval.synth.questions import QUESTIONS, SENTENCES
    from eval.synth.scene import VALUES

    return Vocabulary({k: list(VALUES[k]) for k in KNOWN_KINDS}, {k: QUESTIONS[k] for k in KNOWN_KINDS},
                      {k: SENTENCES[k] for k in KNOWN_KINDS})
