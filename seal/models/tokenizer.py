"""Train, save and load the project's small byte-level BPE tokenizer.

The tokenizer is trained offline with the ``tokenizers`` library from any iterable of text (the
synthetic benchmark's questions, answers and object names), always together with
:data:`BASE_TEXTS` (the fixed prompt strings: chat roles, the refusal sentence, the letter-choice
instruction, option letters, digits). It is wrapped as a ``transformers``
``PreTrainedTokenizerFast`` and saved with ``save_pretrained`` so that
``AutoTokenizer.from_pretrained(dir)`` / ``AutoProcessor.from_pretrained(dir)`` load it.

Design:
- Byte-level BPE: every string encodes (no ``<unk>`` at evaluation time) and decodes exactly.
- Digits are split one by one so that coordinates like ``0.125`` tokenize uniformly.
- Special tokens (fixed ids 0..5, in this order): ``<unk> <s> </s> <pad> <image> <LOC>``.
  ``<image>`` is the LLaVA image placeholder; ``<LOC>`` is the search model's location token.
- Every encoding starts with ``<s>`` (added by the post-processor, as for LLaMA), so the chat
  template does not add it.
- Chat template (:data:`CHAT_TEMPLATE`): ``"USER: {user} ASSISTANT: {reply}</s>"``; with
  ``add_generation_prompt`` the prompt ends with ``"ASSISTANT:"`` and the reply is encoded as
  ``" " + reply`` followed by ``</s>`` (:func:`encode_reply`).

Training is deterministic: the same texts and vocabulary size give the same vocabulary and merges.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

from seal.core.tokens import (  # noqa: F401  (the tokenizer's vocabulary)
    BOS, EOS, IMAGE_TOKEN, LOC_TOKEN, OPTION_LETTERS, PAD, SPECIAL_TOKENS, UNK)

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}"
    "{%- else -%}{%- set text = namespace(s='') -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{%- set text.s = text.s + '<image>\n' -%}"
    "{%- else -%}{%- set text.s = text.s + part['text'] -%}{%- endif -%}"
    "{%- endfor -%}{%- set text = text.s -%}{%- endif -%}"
    "{%- if message['role'] == 'system' -%}{{ text }}{{ ' ' }}"
    "{%- elif message['role'] == 'user' -%}USER: {{ text }}{{ ' ' }}"
    "{%- elif message['role'] == 'assistant' -%}ASSISTANT: {{ text }}</s>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}ASSISTANT:{%- endif -%}"
)
"""Vicuna-v1-like template without the system prompt: ``USER: ... ASSISTANT: ...</s>``.

``content`` is a string (with ``<image>`` placeholders already in it) or a list of
``{"type": "image"}`` / ``{"type": "text", "text": ...}`` parts (each image becomes ``<image>\\n``).
"""

BASE_TEXTS: tuple[str, ...] = (
    "USER: ASSISTANT:",
    "Sorry, I can not answer the question. Some visual information about the following objects "
    "is missing or unclear: striped star, blue circle.",
    "Answer with the option's letter from the given choices directly.",
    "Additional visual information to focus on: not found at [0.125, 0.500, 0.875, 1.000]",
    " ".join(f"({letter}) {letter}" for letter in OPTION_LETTERS),
    "0 1 2 3 4 5 6 7 8 9 . , ; : ? ! ( ) [ ] \" '",
    "What is the color of the object? Is the object on the left or right side of the other object?",
    "The object is on the left. The object is on the right. Yes. No.",
)
"""Fixed strings of our prompts, always part of the training corpus, repeated in proportion to it so
that their words (and the option letters " A" ... " H") become single tokens."""


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048,
                    min_frequency: int = 2) -> "PreTrainedTokenizerFast":
    """Train a byte-level BPE tokenizer on ``texts`` (plus :data:`BASE_TEXTS`).

    Args:
        texts: training text; any iterable of strings (e.g. words, questions, answers).
        vocab_size: upper bound on the vocabulary size, special tokens and the 256 bytes included.
        min_frequency: a pair must occur at least this often to be merged.

    Returns:
        A ``PreTrainedTokenizerFast`` with the special tokens of :data:`SPECIAL_TOKENS`, right
        padding with ``<pad>``, and :data:`CHAT_TEMPLATE`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size: expected >= {len(SPECIAL_TOKENS) + 256} (specials + bytes), found {vocab_size}")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(texts)
    # the fixed strings stay among the most frequent pairs however large the corpus (single-token letters)
    corpus += list(BASE_TEXTS) * max(8, len(corpus) // 16)
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))
    for i, name in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(name) != i:
            raise RuntimeError(f"special token {name!r} got id {tok.token_to_id(name)}, expected {i}")
    bos_id = SPECIAL_TOKENS.index(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok) -> "PreTrainedTokenizerFast":
    """Wrap a ``tokenizers.Tokenizer`` holding :data:`SPECIAL_TOKENS` as a ``PreTrainedTokenizerFast``."""
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        extra_special_tokens=[IMAGE_TOKEN, LOC_TOKEN],
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def save_tokenizer(tokenizer: "PreTrainedTokenizerFast", out_dir: str | Path) -> Path:
    """``save_pretrained`` into ``out_dir`` (created); returns the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    return out


def load_tokenizer(path: str | Path) -> "PreTrainedTokenizerFast":
    """Load a tokenizer saved by :func:`save_tokenizer` (local files only).

    Raises:
        InputError: ``path`` is missing or holds no tokenizer.
    """
    from transformers import AutoTokenizer

    from seal.core.errors import InputError

    p = Path(path)
    if not (p / "tokenizer.json").is_file():
        raise InputError("expected a tokenizer directory with tokenizer.json (from save_pretrained)", p)
    return AutoTokenizer.from_pretrained(str(p), local_files_only=True)


def encode_reply(tokenizer: "PreTrainedTokenizerFast", reply: str, add_eos: bool = True) -> list[int]:
    """Token ids of an assistant reply as it follows the ``"ASSISTANT:"`` prompt.

    The reply is encoded as ``" " + reply.strip()`` without ``<s>``, then ``</s>`` when
    ``add_eos``. Training labels, option scoring and letter choice all use this one encoding.
    """
    ids = tokenizer(" " + reply.strip(), add_special_tokens=False)["input_ids"]
    return [*ids, tokenizer.eos_token_id] if add_eos else list(ids)


def chat_prompt(tokenizer: "PreTrainedTokenizerFast", user_text: str) -> str:
    """The prompt string ``"USER: {user_text} ASSISTANT:"`` rendered by the chat template."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True)


def special_token_ids(tokenizer: "PreTrainedTokenizerFast",
                      names: Sequence[str] = SPECIAL_TOKENS) -> dict[str, int]:
    """``{token: id}`` for the given special tokens, checking each is a single known token."""
    out = {}
    for name in names:
        ids = tokenizer.convert_tokens_to_ids([name])
        if not ids or ids[0] is None or (ids[0] == tokenizer.unk_token_id and name != UNK):
            raise ValueError(f"tokenizer has no special token {name!r}")
        out[name] = int(ids[0])
    return out
