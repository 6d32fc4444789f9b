"""The text corpus the VQA tokenizer is trained on: every question, answer and refusal wording.

The texts come from the SynthVStar generator's own wording functions
(:func:`eval.synth.questions.attribute_question` / :func:`~eval.synth.questions.spatial_question`),
the refusal writer (:func:`seal.vqa.format_refusal`), the letter-choice layout
(:func:`seal.vqa.letter_question`) and the visual-working-memory layout
(:func:`vwm.layout.build_prompt`), so the tokenizer sees exactly the strings training and
inference produce, for every object name of the vocabulary (4 patterns x 10 colours x 8 shapes):

- attribute questions (colour, pattern) about every name, plain and text-only (answer stated),
  with their full-sentence and short options;
- spatial questions about random pairs of names;
- refusals listing one and two names;
- letter-format questions (full and short options);
- VWM prompts with found targets (normalised boxes) and "not found" lines.

No image is rendered; the corpus takes well under a second.
"""

from __future__ import annotations

import itertools

import numpy as np
from PIL import Image

from eval.synth.questions import attribute_question, spatial_question
from eval.synth.scene import ATTRS, NAME_ATTRS, VALUES, describe, new_object
from seal.vqa.prompts import letter_question
from seal.vqa.refusal import format_refusal
from vwm.layout import VisualWorkingMemory, VWMConfig, build_prompt

_CANVAS = Image.new("RGB", (64, 48))
"""Stand-in global image for laying out VWM prompt text (only its size matters for the coordinates)."""


def corpus_texts(seed: int = 0, spatial_pairs: int = 400, layouts: int = 200) -> list[str]:
    """All prompt and reply strings of the VQA task, deterministic in ``seed``.

    Args:
        seed: seeds the option shuffles, the spatial pairs and the layout boxes.
        spatial_pairs: how many random (a, b) name pairs get spatial questions.
        layouts: how many VWM prompts (with boxes and "not found" lines) are written.

    Returns:
        A list of strings (questions, option sentences, short options, refusals, letter prompts,
        VWM layouts), each a complete text as it appears in a prompt or a reply.
    """
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    all_attrs = [dict(zip(ATTRS, combo)) for combo in itertools.product(*(VALUES[k] for k in ATTRS))]
    names: list[str] = []
    for attrs in all_attrs:
        target = new_object(rng, attrs, 40.0, role="target")
        for kind in ("color", "pattern"):
            target.name = describe(attrs, NAME_ATTRS[kind])
            names.append(target.name)
            for text_only in (False, True):
                texts.extend(_question_texts(attribute_question(rng, kind, target, [target], text_only)))
    names = sorted(set(names))
    for _ in range(spatial_pairs):
        a, b = (new_object(rng, all_attrs[int(i)], 40.0, role="target")
                for i in rng.choice(len(all_attrs), 2, replace=False))
        a.cx, b.cx = rng.uniform(0, 100, size=2)
        a.name, b.name = describe(a.attrs, NAME_ATTRS["spatial"]), describe(b.attrs, NAME_ATTRS["spatial"])
        texts.extend(_question_texts(spatial_question(rng, a, b, text_only=bool(rng.random() < 0.5))))
    for name in names:
        texts.append(format_refusal([name]))
        texts.append(format_refusal([name, names[int(rng.integers(len(names)))]]))
    for _ in range(layouts):
        texts.append(_layout_text(rng, names))
    return texts


def _question_texts(q) -> list[str]:
    """A question's strings: the question, each option, and both letter layouts."""
    return [q.question, *q.options, " ".join(q.short_options),
            letter_question(q.question, q.options), letter_question(q.question, q.short_options)]


def _layout_text(rng: np.random.Generator, names: list[str]) -> str:
    """One VWM prompt: 1-3 targets, each found (random box) or not found. Without relation lines: the
    shipped tokenizers were trained before ``vwm.relations`` existed, and those lines' words already
    occur in the spatial questions, so leaving them out keeps every recipe's tokenizer as it was."""
    vwm = VisualWorkingMemory(_CANVAS, config=VWMConfig(max_crops=0, relations=False))
    w, h = _CANVAS.size
    for _ in range(int(rng.integers(1, 4))):
        name = names[int(rng.integers(len(names)))]
        if rng.random() < 0.25:
            vwm.add_target(name, None)
        else:
            x1, y1 = rng.uniform(0, w - 2), rng.uniform(0, h - 2)
            vwm.add_target(name, (x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)), 0.9)
    text, _ = build_prompt("What is the color of the object?", vwm)
    return text.replace("<image>\n", "")
