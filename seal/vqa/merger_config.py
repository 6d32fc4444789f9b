"""The token merger's config (``merger`` section) and temperature schedule, importable without torch
(reading a config never loads torch); the merger itself is :mod:`seal.vqa.merger`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seal.core.errors import ConfigError

VARIANTS = ("simple", "question_aware")
"""``simple``: the tokens alone decide; ``question_aware``: cross-attention to the question's text."""

@dataclass
class MergerConfig:
    """The ``merger`` section: the merger's architecture and temperature schedule."""

    variant: Literal["simple", "question_aware"] = "simple"
    """``simple`` (question-free) or ``question_aware`` (tokens cross-attend to the question's text
    embeddings, which must then be passed to :meth:`TokenMerger.forward`)."""
    tokens: int = 32
    """``M``, the merged tokens per image when :meth:`TokenMerger.forward` is not told otherwise."""
    vision_dim: int = 0
    """``D_v``, the width of the tower features it merges (0: set from the VQA model by the recipe)."""
    text_dim: int = 0
    """``D_t``, the width of the question's text embeddings (question_aware; 0: set from the model)."""
    hidden_dim: int = 128
    """``H``, the width of the token encoding, the scorer and the similarity projection."""
    heads: int = 4
    """Attention heads of the question cross-attention (``hidden_dim`` must be divisible by it)."""
    temperature_start: float = 1.0
    """Temperature of the assignment (and of the straight-through Gumbel gate) at training step 0."""
    temperature_end: float = 0.1
    """Temperature after ``anneal_steps`` training steps (and at evaluation after training)."""
    anneal_steps: int = 500
    """Training steps of the linear annealing from ``temperature_start`` to ``temperature_end``."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"merger.variant: expected one of {', '.join(VARIANTS)}, found {self.variant!r}")
        if self.tokens < 1:
            raise ConfigError(f"merger.tokens: expected >= 1, found {self.tokens}")
        for name in ("vision_dim", "text_dim"):
            if getattr(self, name) < 0:
                raise ConfigError(f"merger.{name}: expected >= 0 (0 = from the model), found {getattr(self, name)}")
        if self.hidden_dim < 1 or self.heads < 1 or self.hidden_dim % self.heads:
            raise ConfigError(f"merger.hidden_dim: expected a positive multiple of merger.heads, found "
                              f"{self.hidden_dim} / {self.heads}")
        if not 0.0 < self.temperature_end <= self.temperature_start:
            raise ConfigError(f"merger.temperature_end: expected 0 < temperature_end <= temperature_start, found "
                              f"{self.temperature_end} / {self.temperature_start}")
        if self.anneal_steps < 0:
            raise ConfigError(f"merger.anneal_steps: expected >= 0, found {self.anneal_steps}")


def anneal_temperature(step: int, start: float, end: float, steps: int) -> float:
    """The temperature at training ``step``: linear from ``start`` (step 0) to ``end`` (step ``steps``),
    then ``end`` (``steps == 0``: always ``end``)."""
    if steps <= 0 or step >= steps:
        return float(end)
    return float(start + (end - start) * max(0, step) / steps)
