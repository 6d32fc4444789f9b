"""Supervised VQA examples: (prompt layout, answer) -> tensors with the prompt masked out of the loss.

The prompt is encoded exactly as at inference (:func:`seal.vqa.prompts.encode_prompt`) and the
answer exactly as option scoring encodes a reply (:func:`seal.models.chat.encode_reply`, in the
checkpoint's chat template; our tiny models: ``" " + answer`` then ``</s>``), so the loss trains the
very sequences the model is asked about.

The image inputs travel with the example in the family's own keys: ``pixel_values`` always, plus
``image_sizes`` (LLaVA-OneVision) or ``image_grid_thw`` and the per-token ``mm_token_type_ids``
(Qwen2.5-VL); :func:`collate` batches whichever are present.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from seal.models.chat import chat_format
from seal.vqa.prompts import encode_prompt
from vwm.layout import VisualWorkingMemory

if TYPE_CHECKING:
    import torch
    from transformers import ProcessorMixin

IGNORE_INDEX = -100
"""Label of positions excluded from the loss (the prompt and the padding)."""


IMAGE_KEYS = ("image_sizes", "image_grid_thw")
"""Per-image tensors besides ``pixel_values`` that some families' processors return (batched along dim 0)."""


def build_training_example(processor: "ProcessorMixin", question: str, answer: str,
                           vwm: VisualWorkingMemory | None = None) -> dict[str, "torch.Tensor | None"]:
    """One example: the prompt laid out from ``question`` and ``vwm``, followed by ``answer``.

    Args:
        processor: the model's processor (any supported family).
        question: the user question.
        answer: the assistant reply to learn (e.g. an option sentence or a refusal).
        vwm: global image + searched targets; None for a text-only example.

    Returns:
        ``input_ids`` (L,) int64, ``attention_mask`` (L,) int64 (all ones), ``labels`` (L,) int64
        (:data:`IGNORE_INDEX` on the P prompt tokens, the reply ids after them), and
        ``pixel_values`` (the processor's image tensor, e.g. (n_images, 3, S, S) float32) or None;
        plus the processor's other image keys (:data:`IMAGE_KEYS`) and ``mm_token_type_ids`` (L,)
        (0 on the reply) when it returns them.
    """
    import torch

    enc = encode_prompt(processor, question, vwm)
    prompt_ids = enc["input_ids"][0]
    reply = torch.tensor(chat_format(processor).reply_ids(answer), dtype=torch.long)
    input_ids = torch.cat([prompt_ids, reply])
    labels = torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), reply])
    example = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "pixel_values": enc.get("pixel_values"),
    }
    example.update({k: enc[k] for k in IMAGE_KEYS if enc.get(k) is not None})
    if enc.get("mm_token_type_ids") is not None:
        example["mm_token_type_ids"] = torch.cat([enc["mm_token_type_ids"][0], torch.zeros_like(reply)])
    return example


def collate(examples: Sequence[dict], pad_token_id: int) -> dict[str, "torch.Tensor"]:
    """Right-pad examples into a batch for the model's ``forward``.

    Returns:
        ``input_ids`` (B, L) padded with ``pad_token_id``, ``attention_mask`` (B, L) 0 on padding,
        ``labels`` (B, L) :data:`IGNORE_INDEX` on padding, and ``pixel_values`` (total images, ...)
        concatenated in example order (the model fills the image positions row by row, so this order
        matches; LLaVA-OneVision's per-image tile dimension is zero-padded to the longest) -- omitted
        when no example has images; likewise the other :data:`IMAGE_KEYS` present, and
        ``mm_token_type_ids`` (B, L) 0 on padding.
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
    if any(ex.get("mm_token_type_ids") is not None for ex in examples):
        batch["mm_token_type_ids"] = torch.zeros((len(examples), length), dtype=torch.long)
        for row, ex in enumerate(examples):
            if ex.get("mm_token_type_ids") is not None:
                batch["mm_token_type_ids"][row, :int(ex["input_ids"].shape[0])] = ex["mm_token_type_ids"]
    pixels = [ex["pixel_values"] for ex in examples if ex.get("pixel_values") is not None]
    if pixels:
        batch["pixel_values"] = _cat_padded(pixels)
    for key in IMAGE_KEYS:
        values = [ex[key] for ex in examples if ex.get(key) is not None]
        if values:
            batch[key] = torch.cat(values, dim=0)
    return batch


def _cat_padded(tensors: Sequence["torch.Tensor"]) -> "torch.Tensor":
    """Concatenate along dim 0; 5-D tensors (images, tiles, C, H, W) are zero-padded to the most tiles."""
    import torch

    if tensors[0].dim() != 5:
        return torch.cat(list(tensors), dim=0)
    tiles = max(int(t.shape[1]) for t in tensors)
    padded = [torch.cat([t, t.new_zeros((t.shape[0], tiles - t.shape[1], *t.shape[2:]))], dim=1) for t in tensors]
    return torch.cat(padded, dim=0)
