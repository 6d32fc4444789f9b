"""The conjunctive word scorer: does *every* word of the target phrase describe the object at a cell?

The cosine score of :class:`search.vsm.box_patches.PatchBoxDecoder` compares one cell embedding
with one query vector: a sum of evidence, so an object that matches one word of "red star" (a red
circle, a blue star) scores part of the way up, and no threshold parts "the named object is here"
from "a near miss is here". This head scores each (cell, phrase word) pair on its own and adds the
log-probabilities, ``log p = sum_w log sigmoid(<u_cell, e_w> + b_w)``: a product, so one wrong word
sinks the cell. Words that name nothing (the prompt template) learn a high ``b_w`` and drop out.
Its logit ``log p - log(1 - p)`` is added to the box decoder's cell logits (boxes unchanged).

Shapes: image features (B, C_v, g, g), phrase token ids / keep mask (B, T) -> logits (B, g*g).
"""

from __future__ import annotations

import math

import torch
from torch import nn

WORD_BIAS_INIT = 3.0
"""Initial per-word bias: every word starts as "describes every cell" (sigmoid 0.95), so a fresh
head barely moves the box decoder's scores and learns which words rule cells out."""


class WordMatch(nn.Module):
    """Per-(cell, word) match logits summed as log-probabilities over the phrase's words.

    Args:
        vision_dim: channels C_v of the image features.
        vocab_size: rows of the word table (the tokenizer's length).
        dim: width W of the cell and word embeddings.
    """

    def __init__(self, vision_dim: int, vocab_size: int, dim: int = 64) -> None:
        super().__init__()
        self.cell = nn.Sequential(nn.Conv2d(vision_dim, dim, 1), nn.GELU(), nn.Conv2d(dim, dim, 3, padding=1))
        self.word = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.word.weight, std=0.02)
        self.bias = nn.Embedding(vocab_size, 1)
        nn.init.constant_(self.bias.weight, WORD_BIAS_INIT)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, image_features: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Logit that all kept words describe each cell's object.

        Args:
            image_features: (B, C_v, g, g) float.
            ids: (B, T) int64 phrase token ids; ``keep`` (B, T) bool marks the words that count.

        Returns:
            (B, g*g) float32 logits, row-major cells (the box decoder's candidate order).
        """
        if image_features.ndim != 4 or ids.shape != keep.shape or ids.shape[0] != image_features.shape[0]:
            raise ValueError(f"expected features (B, C, g, g) and ids / keep (B, T) with the same B, found "
                             f"{tuple(image_features.shape)}, {tuple(ids.shape)}, {tuple(keep.shape)}")
        cells = self.cell(image_features.float()).flatten(2).transpose(1, 2)  # (B, N, W)
        words = self.word(ids)  # (B, T, W)
        s = (cells @ words.transpose(1, 2)) * self.scale + self.bias(ids).squeeze(-1).unsqueeze(1)  # (B, N, T)
        log_p = (nn.functional.logsigmoid(s) * keep.unsqueeze(1).float()).sum(-1)  # (B, N), <= 0
        log_p = log_p.clamp(max=-1e-6)
        return log_p - torch.log(-torch.expm1(log_p))
