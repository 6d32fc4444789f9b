"""Prompt strings and prompt encoding shared by VQA inference and VQA training.

One path from (question, visual working memory) to model inputs, used by :class:`seal.vqa.VQAModel`
and by :func:`seal.vqa.examples.build_training_example`, so training and inference see the same
tokens: :func:`vwm.layout.build_prompt` lays out the user turn and its images, the tokenizer's chat
template wraps it as ``"USER: ... ASSISTANT:"``, and the ``LlavaProcessor`` expands each ``<image>``
and preprocesses the images. Replies are encoded by :func:`seal.models.tokenizer.encode_reply`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from seal.models.tokenizer import OPTION_LETTERS, chat_prompt
from vwm.layout import VisualWorkingMemory, build_prompt

if TYPE_CHECKING:
    from transformers import BatchFeature, LlavaProcessor

LETTER_INSTRUCTION = "Answer with the option's letter from the given choices directly."
"""The VLMEvalKit multiple-choice instruction, written after the options."""


def letter_question(question: str, options: Sequence[str]) -> str:
    """``question`` followed by one ``"(A) option"`` line per option and :data:`LETTER_INSTRUCTION`."""
    if not 1 <= len(options) <= len(OPTION_LETTERS):
        raise ValueError(f"expected 1..{len(OPTION_LETTERS)} options, found {len(options)}")
    lines = [question.strip()]
    lines += [f"({letter}) {' '.join(str(opt).split())}" for letter, opt in zip(OPTION_LETTERS, options)]
    lines.append(LETTER_INSTRUCTION)
    return "\n".join(lines)


def encode_prompt(processor: "LlavaProcessor", question: str,
                  vwm: VisualWorkingMemory | None) -> "BatchFeature":
    """Model inputs for the prompt ``"USER: {layout} ASSISTANT:"`` (batch of one).

    Args:
        processor: the model's ``LlavaProcessor``.
        question: the user question (several lines allowed).
        vwm: global image + searched targets; None for the text-only prompt.

    Returns:
        ``input_ids`` (1, P) int64 starting with ``<s>`` and with every ``<image>`` expanded to the
        model's image token count, ``attention_mask`` (1, P), and ``pixel_values``
        (n_images, 3, S, S) float32 when the layout holds images.
    """
    text, images = build_prompt(question, vwm)
    prompt = chat_prompt(processor.tokenizer, text)
    return processor(text=[prompt], images=images or None, return_tensors="pt")
