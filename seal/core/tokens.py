"""Token strings every layer agrees on: the special tokens and the option letters."""

from __future__ import annotations

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
IMAGE_TOKEN = "<image>"
LOC_TOKEN = "<LOC>"
SPECIAL_TOKENS: tuple[str, ...] = (UNK, BOS, EOS, PAD, IMAGE_TOKEN, LOC_TOKEN)
"""Special tokens; their ids are their positions here (``<unk>`` = 0 ... ``<LOC>`` = 5)."""

OPTION_LETTERS = "ABCDEFGH"
"""Letters used to label multiple-choice options, ``(A)`` first."""
