"""Conversations -> the VQA recipe's tokenised examples (:class:`training.vqa_data.VQADataset`).

Each conversation is laid out through the one prompt path, as at inference: the image is the
visual working memory's global view (letterboxed by the ``vwm`` section), the first user turn is
:func:`seal.vqa.examples.build_training_example`'s prompt and its reply; each later turn appends
that turn's text-only prompt (:func:`seal.vqa.prompts.encode_prompt` without its ``<s>``) and its
reply (:func:`seal.models.tokenizer.encode_reply`, ending in ``</s>``). Labels are the reply tokens
only; every prompt token and the padding are :data:`seal.vqa.examples.IGNORE_INDEX`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from seal.core.errors import InputError
from training.data.records import Conversation

if TYPE_CHECKING:
    from training.vqa_data import VQADataset
    from vwm.layout import VWMConfig


def conversation_example(processor, conv: Conversation, vwm_config: "VWMConfig") -> dict:
    """``input_ids`` / ``labels`` (L,) int64 and ``pixel_values`` (n_img, 3, S, S) float32 or None."""
    import torch

    from seal.core.image_io import load_image
    from seal.models.tokenizer import encode_reply
    from seal.vqa.examples import IGNORE_INDEX, build_training_example
    from seal.vqa.prompts import encode_prompt
    from vwm.layout import VisualWorkingMemory

    vwm = None
    if conv.image is not None:
        try:
            vwm = VisualWorkingMemory(global_image=load_image(conv.image), config=vwm_config)
        except InputError as exc:
            raise InputError(f"conversation {conv.id!r}: {exc}", conv.source) from None
    first = conv.turns[0]
    ex = build_training_example(processor, first.question, first.reply, vwm)
    ids, labels = [ex["input_ids"]], [ex["labels"]]
    bos = processor.tokenizer.bos_token_id
    for turn in conv.turns[1:]:
        prompt = encode_prompt(processor, turn.question, None)["input_ids"][0]
        if bos is not None and len(prompt) and int(prompt[0]) == bos:
            prompt = prompt[1:]
        reply = torch.tensor(encode_reply(processor.tokenizer, turn.reply), dtype=torch.long)
        ids += [prompt, reply]
        labels += [torch.full_like(prompt, IGNORE_INDEX), reply]
    return {"input_ids": torch.cat(ids), "labels": torch.cat(labels), "pixel_values": ex["pixel_values"]}


def build_user_dataset(processor, conversations: list[Conversation], vwm_config: "VWMConfig",
                       max_length: int, log=print) -> "VQADataset":
    """Every conversation as one example (refusing one longer than ``max_length`` tokens)."""
    from training.vqa_data import VQADataset

    examples, views = [], []
    every = max(1, len(conversations) // 10)
    for i, conv in enumerate(conversations, start=1):
        ex = conversation_example(processor, conv, vwm_config)
        if max_length and len(ex["input_ids"]) > max_length:
            raise InputError(f"conversation {conv.id!r}: {len(ex['input_ids'])} tokens, more than the "
                             f"{max_length} the model takes (data.max_length); shorten or split it", conv.source)
        image_ids = []
        if ex["pixel_values"] is not None:
            for view in ex["pixel_values"].numpy().astype(np.float16):
                image_ids.append(len(views))
                views.append(view)
        examples.append({"input_ids": ex["input_ids"].numpy(), "labels": ex["labels"].numpy(), "image_ids": image_ids,
                         "kind": "conversation", "view": "global" if image_ids else "none", "tag": "user"})
        if i % every == 0 or i == len(conversations):
            log(f"built {i}/{len(conversations)} conversations")
    images = np.stack(views) if views else np.zeros((0,), dtype=np.float16)
    return VQADataset(examples, images, processor.tokenizer.pad_token_id, None)
