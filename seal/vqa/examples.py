"""Supervised VQA examples: (prompt layout, answer) -> tensors with the prompt masked out of the loss.

The prompt is encoded exactly as at inference (:func:`seal.vqa.prompts.encode_prompt`) and the
answer exactly as option scoring encodes a reply (:func:`seal.models.tokenizer.encode_reply`:
``" " + answer`` then ``</s>``), so the loss trains the very sequences the model is asked about.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from seal.models.tokenizer import encode_reply
from seal.vqa.prompts import encode_prompt
from vwm.layout import VisualWorkingMemory

if TYPE_CHECKING:
    import torch
    from transformers import LlavaProcessor

IGNORE_INDEX = -100
"""Label of positions excluded from the loss (the prompt and the padding)."""


def build_training_example(processor: "LlavaProcessor", question: str, answer: str,
                           vwm: VisualWorkingMemory | None = None) -> dict[str, "torch.Tensor | None"]:
    """One example: the prompt laid out from ``question`` and ``vwm``, followed by ``answer``.

    Args:
        processor: the model's ``LlavaProcessor``.
        question: the user question.
        answer: the assistant reply to learn (e.g. an option sentence or a refusal).
        vwm: global image + searched targets; None for a text-only example.

    Returns:
        ``input_ids`` (L,) int64, ``attention_mask`` (L,) int64 (all ones), ``labels`` (L,) int64
        (:data:`IGNORE_INDEX` on the P prompt tokens, the reply ids after them), and
        ``pixel_values`` (n_images, 3, S, S) float32 or None.
    """
    import torch

    enc = encode_prompt(processor, question, vwm)
    prompt_ids = enc["input_ids"][0]
    reply = torch.tensor(encode_reply(processor.tokenizer, answer), dtype=torch.long)
    input_ids = torch.cat([prompt_ids, reply])
    labels = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), reply])
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "pixel_values": enc.get("pixel_values"),
    }


def collate(examples: Sequence[dict], pad_token_id: int) -> dict[str, "torch.Tensor"]:
    """Right-pad examples into a batch for ``LlavaForConditionalGeneration.forward``.

    Returns:
        ``input_ids`` (B, L) padded with ``pad_token_id``, ``attention_mask`` (B, L) 0 on padding,
        ``labels`` (B, L) :data:`IGNORE_INDEX` on padding, and ``pixel_values``
        (total images, 3, S, S) concatenated in example order (the model fills the ``<image>``
        positions row by row, so this order matches) -- omitted when no example has images.
    """
    import torch

    if not examples:
        raise ValueError("collate needs at least one example")
    length = max(int(ex["input_ids"].shape[0]) for ex in examples)
    batch = {
        "input_ids": torch.full((len(examples), length), pad_token_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(examples), length), dtype=torch.long),
        "labels": torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long),
    }
    for row, ex in enumerate(examples):
        n = int(ex["input_ids"].shape[0])
        batch["input_ids"][row, :n] = ex["input_ids"]
        batch["attention_mask"][row, :n] = ex["attention_mask"]
        batch["labels"][row, :n] = ex["labels"]
    pixels = [ex["pixel_values"] for ex in examples if ex.get("pixel_values") is not None]
    if pixels:
        batch["pixel_values"] = torch.cat(pixels, dim=0)
    return batch
