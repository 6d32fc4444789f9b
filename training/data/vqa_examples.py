"""Conversations -> the VQA recipe's tokenised examples (a :class:`training.vqa_data.VQADataset`).

Each conversation is laid out through the one prompt path, as at inference: the image is the
visual working memory's global view (letterboxed by the ``vwm`` section) and the first exchange is
:func:`seal.vqa.examples.build_training_example` (prompt, then reply). Each later exchange appends
what the checkpoint's chat template writes between the conversation so far and that turn's
generation prompt (the template rendered with and without the new user turn, the history's
replies in it, minus the whitespace a reply's encoding drops), then the reply, encoded as the first
reply was (:func:`reply_ids`). Labels are the reply tokens only;
every prompt token and the padding are :data:`seal.vqa.examples.IGNORE_INDEX`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from seal.core.errors import InputError
from training.data.records import Conversation
from training.vqa_data import VQADataset

if TYPE_CHECKING:
    import torch

    from vwm.layout import VWMConfig


def _render(processor, messages: list[dict], generation: bool) -> str:
    text = processor.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False)
    return text[0] if isinstance(text, list) else text


def _message(role: str, text: str) -> dict:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def continuation_ids(processor, history: Sequence[tuple[str, str]], question: str) -> list[int]:
    """Token ids the chat template writes after the exchanges ``history`` (``(question, reply)``) up to
    the generation prompt of the next user turn ``question`` (no ``<s>``).

    Raises:
        ValueError: the template does not render the longer conversation as an extension of the shorter.
    """
    messages = [m for q, a in history for m in (_message("user", q), _message("assistant", a))]
    before = _render(processor, messages, generation=False).rstrip()  # a reply's ids end without the whitespace
    after = _render(processor, messages + [_message("user", question)], generation=True)
    if not after.startswith(before):
        raise ValueError("the chat template does not render a conversation as an extension of its first turns")
    return list(processor.tokenizer(after[len(before):], add_special_tokens=False)["input_ids"])


def reply_ids(processor, reply: str) -> "torch.Tensor":
    """(R,) int64 ids of ``reply`` as :func:`seal.vqa.examples.build_training_example` encodes a reply
    (the one reply encoding: the labelled part of a text-only example)."""
    from seal.vqa.examples import IGNORE_INDEX, build_training_example

    ex = build_training_example(processor, "q", reply, None)
    return ex["input_ids"][ex["labels"] != IGNORE_INDEX]


def conversation_example(processor, conv: Conversation, vwm_config: "VWMConfig") -> dict[str, "torch.Tensor"]:
    """``input_ids`` / ``labels`` (L,) int64, ``pixel_values`` (the processor's image tensor) or None,
    and any other image key the processor returned (``mm_token_type_ids`` extended with zeros)."""
    import torch

    from seal.core.image_io import load_image
    from seal.vqa.examples import IGNORE_INDEX, build_training_example
    from vwm.layout import VisualWorkingMemory

    vwm = None
    if conv.image is not None:
        try:
            vwm = VisualWorkingMemory(global_image=load_image(conv.image), config=vwm_config)
        except InputError as exc:
            raise InputError(f"conversation {conv.id!r}: {exc}", conv.source) from None
    first = conv.turns[0]
    ex = dict(build_training_example(processor, first.question, first.reply, vwm))
    ids, labels = [ex["input_ids"]], [ex["labels"]]
    for k, turn in enumerate(conv.turns[1:], start=1):
        history = [(t.question, t.reply) for t in conv.turns[:k]]
        try:
            prompt = torch.tensor(continuation_ids(processor, history, turn.question), dtype=torch.long)
        except ValueError as exc:
            raise InputError(f"conversation {conv.id!r}, turn {2 * k}: {exc}", conv.source) from None
        reply = reply_ids(processor, turn.reply)
        ids += [prompt, reply]
        labels += [torch.full_like(prompt, IGNORE_INDEX), reply]
    extra = sum(len(t) for t in ids[1:])
    ex["input_ids"], ex["labels"] = torch.cat(ids), torch.cat(labels)
    ex["attention_mask"] = torch.ones_like(ex["input_ids"])
    if ex.get("mm_token_type_ids") is not None:
        ex["mm_token_type_ids"] = torch.cat([ex["mm_token_type_ids"], torch.zeros(extra, dtype=torch.long)])
    return {k: v for k, v in ex.items() if v is not None}


class ConversationDataset(VQADataset):
    """The user's conversations, each example holding its own image tensors (any family's keys),
    batched with :func:`seal.vqa.examples.collate`; shuffling and length buckets as
    :meth:`VQADataset.epochs`."""

    def __init__(self, examples: list[dict], pad_token_id: int) -> None:
        super().__init__(examples, np.zeros((0,), dtype=np.float16), pad_token_id, None)
        self.n_images = sum(1 for ex in examples if ex.get("pixel_values") is not None)

    def batch(self, indices: Sequence[int]) -> dict[str, "torch.Tensor"]:
        from seal.vqa.examples import collate

        return collate([self.examples[i] for i in indices], self.pad_token_id)


def build_user_dataset(processor, conversations: list[Conversation], vwm_config: "VWMConfig",
                       max_length: int, log=print) -> ConversationDataset:
    """Every conversation as one example (refusing one longer than ``max_length`` tokens), laid out as
    the VQA model will read them (``vwm.view_square`` decided for ``processor``, as at inference)."""
    from vwm.budget import resolve_view_square

    vwm_config = resolve_view_square(vwm_config, processor)
    examples = []
    every = max(1, len(conversations) // 10)
    for i, conv in enumerate(conversations, start=1):
        ex = conversation_example(processor, conv, vwm_config)
        if max_length and len(ex["input_ids"]) > max_length:
            raise InputError(f"conversation {conv.id!r}: {len(ex['input_ids'])} tokens, more than the "
                             f"{max_length} the model takes (data.max_length); shorten or split it", conv.source)
        examples.append(ex)
        if i % every == 0 or i == len(conversations):
            log(f"built {i}/{len(conversations)} conversations")
    return ConversationDataset(examples, processor.tokenizer.pad_token_id)
