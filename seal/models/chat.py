"""Prompts and replies in a checkpoint's OWN chat template (any family: our tiny LLaVA, llava-1.5-hf,
LLaVA-OneVision, Qwen2.5-VL).

- :func:`user_message`: the user turn as a list of parts, ``{"type": "image"}`` /
  ``{"type": "text", "text": ...}``, from a layout text holding ``<image>`` placeholders (the newline
  the layout writes after each placeholder belongs to the image part, as the templates that render
  an image as ``"<image>\\n"`` put it back).
- :class:`ChatFormat`: renders a prompt with ``processor.apply_chat_template`` and encodes replies
  as the template writes them. The reply's tokens are derived from the template itself: the
  conversation is rendered with the assistant turn and with the generation prompt only, and the
  reply is the difference: ``lead + reply`` then the turn's end. The end is what the template
  writes after the reply (``</s>``, ``<|im_end|>``, trailing whitespace dropped) or, when it writes
  only whitespace (llava-1.5-hf), the tokenizer's eos. For our tiny template
  (``"USER: ... ASSISTANT: reply</s>"``) this is exactly :func:`seal.models.tokenizer.encode_reply`.
"""

from __future__ import annotations

import weakref
from typing import Any

from seal.core.errors import InputError
from seal.core.tokens import IMAGE_TOKEN

_PROBE = "QzxReplyProbeQzx"
"""A reply no template alters, located in the rendered assistant turn to split lead and end."""


def user_message(text: str) -> dict:
    """The user turn ``{"role": "user", "content": [parts]}`` of a layout ``text``.

    Each ``<image>`` becomes an image part (one newline right after it is part of the image); the
    text between placeholders becomes text parts (empty ones dropped), all in order.
    """
    parts: list[dict] = []
    for i, chunk in enumerate(text.split(IMAGE_TOKEN)):
        if i > 0:
            parts.append({"type": "image"})
            if chunk.startswith("\n"):
                chunk = chunk[1:]
        if chunk:
            parts.append({"type": "text", "text": chunk})
    return {"role": "user", "content": parts}


class ChatFormat:
    """The chat template of one processor: prompt rendering and reply encoding.

    Args:
        processor: the checkpoint's processor (it carries the chat template and the tokenizer), or a
            tokenizer with its own chat template.
        where: the checkpoint directory, named in errors (or None).

    Raises:
        InputError: the processor has no chat template, or its template does not write a reply as
            a suffix of the generation prompt.
    """

    def __init__(self, processor: Any, where: Any = None) -> None:
        from transformers import ProcessorMixin

        self.processor = processor
        self.tokenizer = processor.tokenizer if isinstance(processor, ProcessorMixin) else processor
        self.where = where
        if not getattr(processor, "chat_template", None):
            raise InputError("the processor has no chat template (chat_template.jinja or chat_template.json "
                             "missing)", where)
        self.lead, self.end_ids = self._reply_frame()

    def prompt(self, text: str) -> str:
        """The rendered prompt of a user turn ``text`` (``<image>`` placeholders allowed), ending with the
        template's generation prompt (e.g. ``"USER: ... ASSISTANT:"``)."""
        return self._render([user_message(text)], generation=True)

    def reply_ids(self, reply: str, add_eos: bool = True) -> list[int]:
        """Token ids of an assistant reply as the template writes it after :meth:`prompt` (no special
        prefix such as ``<s>``); with ``add_eos`` the turn's end tokens follow."""
        ids = list(self.tokenizer(self.lead + reply.strip(), add_special_tokens=False)["input_ids"])
        return ids + self.end_ids if add_eos else ids

    @property
    def stop_ids(self) -> list[int]:
        """Token ids that end a generated reply: the turn's end and the tokenizer's eos."""
        ids = [self.end_ids[0]] if self.end_ids else []
        eos = self.tokenizer.eos_token_id
        return ids + ([eos] if eos is not None and eos not in ids else [])

    def _render(self, messages: list[dict], generation: bool) -> str:
        text = self.processor.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False)
        return text[0] if isinstance(text, list) else text

    def _reply_frame(self) -> tuple[str, list[int]]:
        """``(lead, end ids)``: what the template writes before a reply and (tokenised) after it."""
        user = {"role": "user", "content": [{"type": "text", "text": "q"}]}
        prompt = self._render([user], generation=True)
        reply = {"role": "assistant", "content": [{"type": "text", "text": _PROBE}]}
        full = self._render([user, reply], generation=False)
        if not full.startswith(prompt) or _PROBE not in full[len(prompt):]:
            raise InputError("the chat template does not write the assistant reply after its generation prompt "
                             f"(prompt {prompt[-40:]!r}, conversation {full[-60:]!r})", self.where)
        suffix = full[len(prompt):]
        at = suffix.index(_PROBE)
        lead, tail = suffix[:at], suffix[at + len(_PROBE):].rstrip()
        if tail:
            end = list(self.tokenizer(tail, add_special_tokens=False)["input_ids"])
        elif self.tokenizer.eos_token_id is not None:
            end = [int(self.tokenizer.eos_token_id)]
        else:
            raise InputError("the chat template writes nothing after a reply and the tokenizer has no eos token",
                             self.where)
        return lead, end


_FORMATS: "weakref.WeakKeyDictionary[Any, ChatFormat]" = weakref.WeakKeyDictionary()
"""The chat format made for each tokenizer (by :func:`chat_format`), so a reply can be encoded from
the tokenizer alone (:func:`encode_reply`)."""


def chat_format(processor: Any, where: Any = None) -> ChatFormat:
    """The :class:`ChatFormat` of ``processor``, made once per processor and remembered for its tokenizer."""
    fmt = _FORMATS.get(getattr(processor, "tokenizer", processor))
    if fmt is None or fmt.processor is not processor:
        fmt = ChatFormat(processor, where)
        _FORMATS[fmt.tokenizer] = fmt
    return fmt


def encode_reply(tokenizer: Any, reply: str, add_eos: bool = True) -> list[int]:
    """Token ids of an assistant ``reply`` in the chat template of the processor that holds ``tokenizer``
    (the last :func:`chat_format` made for it; else the tokenizer's own template).

    The same signature as :func:`seal.models.tokenizer.encode_reply`, which it equals for our tiny
    models' template.
    """
    fmt = _FORMATS.get(tokenizer)
    return (fmt or chat_format(tokenizer)).reply_ids(reply, add_eos)
