"""Prompt strings and prompt encoding shared by VQA inference and VQA training.

One path from (question, visual working memory) to model inputs, used by :class:`seal.vqa.VQAModel`
and by :func:`seal.vqa.examples.build_training_example`, so training and inference see the same
tokens: :func:`vwm.layout.build_prompt` lays out the user turn and its images, the checkpoint's own
chat template renders it as a list of image / text parts (:class:`seal.models.chat.ChatFormat`; our
tiny models: ``"USER: ... ASSISTANT:"``; Qwen2.5-VL: ChatML with ``<|vision_start|>...``), and the
processor expands each image placeholder to the image's tokens (fixed, any-resolution tiles or a
dynamic grid, by family) and preprocesses the images. Replies are encoded in the same template by
:func:`seal.models.chat.encode_reply`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from seal.core.tokens import OPTION_LETTERS
from seal.models.chat import chat_format
from vwm.layout import VisualWorkingMemory, build_prompt

if TYPE_CHECKING:
    from transformers import BatchFeature, ProcessorMixin

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


def encode_prompt(processor: "ProcessorMixin", question: str,
                  vwm: VisualWorkingMemory | None) -> "BatchFeature":
    """Model inputs for the user turn laid out from ``question`` and ``vwm``, in the processor's chat
    template, ending with its generation prompt (our tiny models: ``"USER: {layout} ASSISTANT:"``), batch of one.

    Args:
        processor: the model's processor (``LlavaProcessor``, ``LlavaOnevisionProcessor``, ``Qwen2_5_VLProcessor``).
        question: the user question (several lines allowed).
        vwm: global image + searched targets; None for the text-only prompt.

    Returns:
        ``input_ids`` (1, P) int64 (starting with ``<s>`` when the tokenizer adds it) with every image
        placeholder expanded to that image's token count, ``attention_mask`` (1, P), and, when the
        layout holds images, the family's image inputs (LLaVA: ``pixel_values`` (n_images, 3, S, S);
        OneVision: ``pixel_values`` (n_images, tiles, 3, S, S) + ``image_sizes``; Qwen2.5-VL:
        ``pixel_values`` (patches, C) + ``image_grid_thw`` (n_images, 3)).
    """
    text, images = build_prompt(question, vwm)
    prompt = chat_format(processor).prompt(text)
    return processor(text=[prompt], images=images or None, return_tensors="pt")
