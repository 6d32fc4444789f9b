"""Question and option wording (V*Bench style) for SynthVStar scenes.

Options come as full sentences (the per-sample JSON; correct first) and as short forms (the letter
format of ``test_questions.jsonl``; same order). A *text-only* question states its answer in a
leading sentence, so it can be answered without looking at the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.synth.scene import VALUES, SceneObject

N_ATTRIBUTE_OPTIONS = 4
"""Attribute questions offer this many options (V*Bench: 4)."""

QUESTIONS = {
    "color": "What is the color of the {name}?",
    "pattern": "What is the pattern of the {name}?",
    "spatial": "Is the {a} on the left or right side of the {b}?",
    "shape": "What is the shape of the {name}?",
}
SENTENCES = {
    "color": "The color of the {name} is {value}.",
    "pattern": "The {name} is {value}.",
    "spatial": "The {a} is on the {value} side of the {b}.",
    "shape": "The {name} is a {value}.",
}
_STATEMENTS = {
    "color": ("The {name} in this picture is painted {value}.",
              "In this image, the {name} is {value}.",
              "Note that the {name} shown here is colored {value}."),
    "pattern": ("The {name} in this picture has a {value} pattern.",
                "In this image, the {name} is {value}.",
                "Note that the {name} shown here is decorated with a {value} pattern."),
    "spatial": ("In this picture the {a} is on the {value} side of the {b}.",
                "Note that the {a} appears to the {value} of the {b}.",
                "In this image, the {a} lies on the {value} of the {b}."),
}
"""Leading sentences of text-only questions: they give the answer away."""


@dataclass
class Question:
    kind: str
    """``color`` | ``pattern`` | ``spatial`` | ``shape`` (``shape`` and the bare attribute questions
    are the hit checks' questions, :func:`check_question`: training probes, not benchmark questions)."""
    question: str
    options: list[str]
    """Full sentences, correct first."""
    short_options: list[str]
    """Short forms ("blue", "striped", "left"), same order as ``options``."""

    @property
    def answer_short(self) -> str:
        return self.short_options[0]


def attribute_question(rng: np.random.Generator, kind: str, target: SceneObject, objects: list[SceneObject],
                       text_only: bool = False) -> Question:
    """Ask ``target``'s colour or pattern (``kind``), naming it by ``target.name``.

    Wrong colour options prefer the colours of near misses of the same shape, so a model that looks
    at the wrong star picks a wrong option.
    """
    answer = getattr(target, kind)
    if kind == "color":
        lures = [o.color for o in objects if o.role != "target" and o.shape == target.shape and o.color != answer]
        lures = list(dict.fromkeys(lures))[: N_ATTRIBUTE_OPTIONS - 1]
        rest = [c for c in VALUES["color"] if c != answer and c not in lures]
        wrong = lures + [str(c) for c in rng.permutation(rest)[: N_ATTRIBUTE_OPTIONS - 1 - len(lures)]]
    else:
        wrong = [p for p in VALUES["pattern"] if p != answer]
    wrong = [wrong[i] for i in rng.permutation(len(wrong))][: N_ATTRIBUTE_OPTIONS - 1]
    shorts = [answer, *wrong]
    text = QUESTIONS[kind].format(name=target.name)
    if text_only:
        text = _statement(rng, kind, value=answer, name=target.name) + " " + text
    return Question(kind, text, [SENTENCES[kind].format(name=target.name, value=v) for v in shorts], shorts)


def spatial_question(rng: np.random.Generator, a: SceneObject, b: SceneObject, text_only: bool = False) -> Question:
    """"Is the ``a`` on the left or right side of the ``b``?" (their footprints are apart along x)."""
    answer = "left" if a.cx < b.cx else "right"
    shorts = [answer, "right" if answer == "left" else "left"]
    text = QUESTIONS["spatial"].format(a=a.name, b=b.name)
    if text_only:
        text = _statement(rng, "spatial", value=answer, a=a.name, b=b.name) + " " + text
    return Question("spatial", text, [SENTENCES["spatial"].format(a=a.name, b=b.name, value=v) for v in shorts],
                    shorts)


CHECK_NOUN = "object"
"""The head noun of a shape question's name ("the dotted object")."""


def check_question(rng: np.random.Generator, kind: str, obj: SceneObject, by: str) -> Question:
    """A question the search's hit check asks (:mod:`search.hit_check.words`): ``obj``'s ``kind`` with
    the name's other word only, so the question never holds the answer: ``kind="pattern"`` names it
    by its shape ("What is the pattern of the cross?"), ``kind="shape"`` by its ``by`` attribute
    (``color`` | ``pattern``) and :data:`CHECK_NOUN` ("What is the shape of the dotted object?").
    Four options, the correct one first."""
    name = check_name(kind, obj, by)
    answer = getattr(obj, kind)
    wrong = [str(v) for v in VALUES[kind] if v != answer]
    shorts = [answer, *[wrong[i] for i in rng.permutation(len(wrong))][: N_ATTRIBUTE_OPTIONS - 1]]
    return Question(kind, QUESTIONS[kind].format(name=name),
                    [SENTENCES[kind].format(name=name, value=v) for v in shorts], shorts)


def check_name(kind: str, obj: SceneObject, by: str) -> str:
    """How :func:`check_question` names ``obj`` when it asks its ``kind``."""
    if kind not in ("color", "pattern", "shape") or by not in ("color", "pattern"):
        raise ValueError(f"check question: kind {kind!r} / by {by!r}")
    return f"{getattr(obj, by)} {CHECK_NOUN}" if kind == "shape" else obj.shape


def _statement(rng: np.random.Generator, kind: str, **fields: str) -> str:
    templates = _STATEMENTS[kind]
    return templates[int(rng.integers(len(templates)))].format(**fields)
