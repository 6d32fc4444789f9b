"""VSM prompt strings and their token layout, shared by training and inference.

Two prompt kinds, each a user question about one image and an assistant reply holding ``<LOC>``:

- ``detect``: "Please locate the {target} in this image." -> "Sure, <LOC>."
- ``context``: "According to common sense and visual cues, where is the {target} most likely to
  be?" -> "<LOC>." (the same heatmap decoder then draws where the target is *likely* to be).

The user turn is rendered by the checkpoint's own chat template with list-of-parts content
(``[{"type": "image"}, {"type": "text", "text": question}]``), so each family gets its own layout;
the one image placeholder is then expanded to the patch's image-token count. With the project's
template (``USER: <image>\\n{question} ASSISTANT: {reply}</s>``) a row is::

    <s> USER: <image> x n_image_tokens \\n question ASSISTANT: reply-tokens [</s>]

and with Qwen2.5-VL's ``<|im_start|>user\\n<|vision_start|><|image_pad|> x n<|vision_end|>question
<|im_end|>\\n<|im_start|>assistant\\n`` + reply-tokens. The reply is encoded as the template writes
it (:class:`seal.models.chat.ChatFormat`: what it puts before a reply, the reply, the turn's end;
for the project's template ``" " + reply`` then ``</s>``).

Training rows carry the whole reply and the turn's end (labels on the reply tokens only); inference
rows stop right after ``<LOC>``, so one teacher-forced forward without generation gives the
``<LOC>`` state. The ``<LOC>`` position is always found by token id (:func:`loc_positions`),
never by an offset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Sequence

from seal.models.tokenizer import IMAGE_TOKEN, LOC_TOKEN

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from seal.models.chat import ChatFormat

PromptKind = Literal["detect", "context"]

DETECT_QUESTION = "Please locate the {target} in this image."
DETECT_REPLY = f"Sure, {LOC_TOKEN}."
CONTEXT_QUESTION = "According to common sense and visual cues, where is the {target} most likely to be?"
CONTEXT_REPLY = f"{LOC_TOKEN}."

_TEMPLATES: dict[str, tuple[str, str]] = {
    "detect": (DETECT_QUESTION, DETECT_REPLY),
    "context": (CONTEXT_QUESTION, CONTEXT_REPLY),
}

IGNORE_INDEX = -100
"""Label of tokens that carry no LM loss (prompt, image, padding)."""


def clean_target(target: str) -> str:
    """Target names are single-spaced and stripped; an empty name is an error."""
    name = " ".join(str(target).split())
    if not name:
        raise ValueError("target name is empty")
    if LOC_TOKEN in name or IMAGE_TOKEN in name:
        raise ValueError(f"target name {name!r} contains a special token")
    return name


def reply_text(kind: PromptKind) -> str:
    """The assistant reply of ``kind`` (contains ``<LOC>`` once)."""
    return _TEMPLATES[kind][1]


def as_chat(chat: "ChatFormat | PreTrainedTokenizerBase") -> "ChatFormat":
    """``chat`` itself, or the :class:`~seal.models.chat.ChatFormat` of a tokenizer (its own template)."""
    from seal.models.chat import chat_format

    return chat if hasattr(chat, "reply_ids") else chat_format(chat)


def user_prompt(chat: "ChatFormat", kind: PromptKind, target: str, image_token: str = IMAGE_TOKEN) -> str:
    """The prompt string up to the assistant's reply: the user turn (one image, then the question of
    ``kind``) rendered by the checkpoint's chat template with list-of-parts content.

    Raises:
        ValueError: the template dropped the question or did not render exactly one ``image_token``.
    """
    if kind not in _TEMPLATES:
        raise ValueError(f"prompt kind: expected one of {sorted(_TEMPLATES)}, found {kind!r}")
    question = _TEMPLATES[kind][0].format(target=clean_target(target))
    text = chat.prompt(f"{IMAGE_TOKEN}\n{question}")
    if question not in text or text.count(image_token) != 1:
        raise ValueError(f"the chat template rendered {text!r}: expected the question and one {image_token}")
    return text


def row_token_ids(chat: "ChatFormat | PreTrainedTokenizerBase", kind: PromptKind, target: str, n_image_tokens: int,
                  with_reply: bool, image_token: str = IMAGE_TOKEN) -> tuple[list[int], list[int]]:
    """Token ids and LM labels of one prompt row.

    Args:
        chat: the checkpoint's chat format (``seal.models.chat.chat_format(processor)``), or a tokenizer
            with its own chat template; its tokenizer holds ``image_token`` and ``<LOC>``.
        kind: ``"detect"`` or ``"context"``.
        target: the target name.
        n_image_tokens: tokens one image occupies (the single ``image_token`` is expanded to this many).
        with_reply: True for training (whole reply + the turn's end, labelled); False for inference
            (the reply cut right after ``<LOC>``, no labels).
        image_token: the processor's image placeholder (``<image>``; Qwen2.5-VL ``<|image_pad|>``).

    Returns:
        ``(ids, labels)``: equal-length int lists; labels are :data:`IGNORE_INDEX` except on reply
        tokens when ``with_reply``.
    """
    chat = as_chat(chat)
    tokenizer = chat.tokenizer
    image_id = tokenizer.convert_tokens_to_ids(image_token)
    loc_id = tokenizer.convert_tokens_to_ids(LOC_TOKEN)
    text = user_prompt(chat, kind, target, image_token)
    bos = tokenizer.bos_token
    prompt = tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]
    if prompt.count(image_id) != 1:
        raise ValueError(f"prompt should hold one {image_token} token, found {prompt.count(image_id)}")
    at = prompt.index(image_id)
    prompt = prompt[:at] + [image_id] * n_image_tokens + prompt[at + 1:]
    reply = chat.reply_ids(reply_text(kind), add_eos=with_reply)
    if reply.count(loc_id) != 1:
        raise ValueError(f"reply {reply_text(kind)!r} should encode {LOC_TOKEN} (id {loc_id}) once; "
                         f"found ids {reply}")
    if not with_reply:
        reply = reply[:reply.index(loc_id) + 1]
        return prompt + reply, [IGNORE_INDEX] * (len(prompt) + len(reply))
    return prompt + reply, [IGNORE_INDEX] * len(prompt) + list(reply)


def encode_prompts(chat: "ChatFormat | PreTrainedTokenizerBase", kinds: Sequence[PromptKind], targets: Sequence[str],
                   n_image_tokens: int | Sequence[int], with_reply: bool,
                   image_token: str = IMAGE_TOKEN) -> dict[str, "torch.Tensor"]:
    """A right-padded batch of prompt rows, one per ``(kind, target)`` (``chat`` / ``image_token``: as
    for :func:`row_token_ids`; a VSM's are ``model.chat`` and ``model.family.image_token``, and
    :meth:`VSMModel.prompt_batch` passes them). ``n_image_tokens``: image tokens of every row, or one
    count per row (a token cut, :mod:`search.vsm.token_cut`).

    Returns:
        ``input_ids`` (B, T) int64, ``attention_mask`` (B, T) int64 (0 on padding) and ``labels``
        (B, T) int64 (:data:`IGNORE_INDEX` outside the reply and on padding).
    """
    import torch

    if len(kinds) != len(targets) or not targets:
        raise ValueError(f"expected as many prompt kinds as targets (>= 1), found {len(kinds)} and {len(targets)}")
    counts = [int(n_image_tokens)] * len(targets) if isinstance(n_image_tokens, int) else list(n_image_tokens)
    if len(counts) != len(targets):
        raise ValueError(f"expected one image-token count per row ({len(targets)}), found {len(counts)}")
    chat = as_chat(chat)
    rows = [row_token_ids(chat, k, t, n, with_reply, image_token) for k, t, n in zip(kinds, targets, counts)]
    width = max(len(ids) for ids, _ in rows)
    pad = chat.tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (row, lab) in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        labels[i, :len(row)] = torch.tensor(lab)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def loc_positions(input_ids: "torch.Tensor", loc_token_id: int,
                  attention_mask: "torch.Tensor | None" = None) -> "torch.Tensor":
    """Index of the one ``<LOC>`` token in each row.

    Args:
        input_ids: (B, T) int64.
        loc_token_id: the tokenizer's ``<LOC>`` id.
        attention_mask: (B, T); padded positions never count.

    Returns:
        (B,) int64 positions.

    Raises:
        ValueError: a row holds no ``<LOC>`` or more than one (naming the row and the count).
    """
    hits = input_ids == loc_token_id  # (B, T)
    if attention_mask is not None:
        hits = hits & attention_mask.bool()
    counts = hits.sum(dim=1)
    bad = (counts != 1).nonzero().flatten().tolist()
    if bad:
        row = bad[0]
        raise ValueError(f"every prompt row must hold exactly one {LOC_TOKEN} token (id {loc_token_id}); "
                         f"row {row} holds {int(counts[row])}")
    return hits.long().argmax(dim=1)
