"""Layer-specific vision-token pruners (seed 002, phase 2): one cross-attention head per configured
LLM layer that scores the vision positions entering that layer.

A head reads the hidden states of the vision positions (queries) and attends over the prompt's text
positions (``queries: text``, question-aware) or over a few learned vectors (``queries: learned``,
question-free); an MLP turns what each vision position gathered into one keep logit. The choice is
a top-k per prompt: ``K = sum_i ceil(N_i * keep_ratio)`` of the ``N_i`` tokens of each image ``i``
(the count the stride proxy keeps, :func:`vwm.budget.prune_token_indices`), among the vision
positions still present. :mod:`seal.vqa.pruned_forward` applies it: a soft key mask in training
(straight-through: the forward uses the 0/1 top-k, the gradient flows through ``log sigmoid``),
the real removal of the dropped positions at inference.

Exported as ``pruners.safetensors`` + ``pruners.json`` (the :class:`PrunerConfig` and the LLM width)
in one folder, with a manifest of kind ``pruners`` written by the recipe.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from seal.core.errors import ConfigError, InputError

WEIGHTS, CONFIG = "pruners.safetensors", "pruners.json"


@dataclass
class PrunerConfig:
    """The ``pruners`` section: where the vision tokens are pruned and how the heads are built."""

    layers: list[int] = field(default_factory=lambda: [1])
    """LLM decoder layers (0-based, ascending) before which a head prunes: layer ``l`` and every
    later one read only the kept vision positions."""
    keep_ratios: list[float] = field(default_factory=lambda: [0.5])
    """Share of each image's vision tokens kept from each layer of ``layers`` on (cumulative, of the
    image's original count; non-increasing, in (0, 1])."""
    hidden_dim: int = 64
    """Width of a head's cross-attention."""
    num_heads: int = 4
    """Attention heads of a head's cross-attention (must divide ``hidden_dim``)."""
    queries: Literal["text", "learned"] = "text"
    """What the vision positions attend to: the prompt's text positions (question-aware) or
    ``num_learned`` learned vectors (question-free)."""
    num_learned: int = 8
    """Learned vectors of ``queries: learned``."""
    position_slots: int = 0
    """> 0: a learned embedding of each vision position's index in its image's block (its place in
    the patch grid; the LLM's hidden states carry no absolute position, RoPE acts inside attention)
    is added to the head's input, for blocks of up to this many tokens (longer blocks share the last
    slot); 0 = the heads see content only."""
    temperature: float = 1.0
    """Temperature of the soft keep probability ``sigmoid(logit / temperature)`` (its gradient)."""
    train_mask: Literal["straight_through", "sigmoid"] = "straight_through"
    """The soft mask of training. ``straight_through``: the forward drops the top-k's losers as
    inference does (their keys masked), the gradient flows through ``log sigmoid`` of the logits (a
    dropped token gets almost none: its attention weight is ~0). ``sigmoid``: no token is dropped,
    each vision key's bias is ``log sigmoid((logit + Gumbel noise) / temperature)`` (every token gets
    gradient; the recipe's ``keep_budget_weight`` holds the mean keep probability at the ratio);
    inference keeps the top-k of the logits either way."""
    gumbel_scale: float = 1.0
    """Training only: scale of the Gumbel noise added to the logits before the top-k (exploration;
    0 = the deterministic top-k of inference)."""

    def __post_init__(self) -> None:
        self.layers = [int(v) for v in self.layers]
        self.keep_ratios = [float(v) for v in self.keep_ratios]
        if not self.layers or any(v < 0 for v in self.layers) or self.layers != sorted(set(self.layers)):
            raise ConfigError(f"pruners.layers: expected ascending distinct layer indices >= 0, found {self.layers}")
        if len(self.keep_ratios) != len(self.layers):
            raise ConfigError(f"pruners.keep_ratios: expected one ratio per layer ({len(self.layers)}), found "
                              f"{self.keep_ratios}")
        if any(not 0.0 < r <= 1.0 for r in self.keep_ratios) or any(
                b > a for a, b in zip(self.keep_ratios, self.keep_ratios[1:])):
            raise ConfigError(f"pruners.keep_ratios: expected non-increasing ratios in (0, 1], found "
                              f"{self.keep_ratios}")
        if self.hidden_dim < 1 or self.num_heads < 1 or self.hidden_dim % self.num_heads:
            raise ConfigError(f"pruners.hidden_dim: expected a positive multiple of pruners.num_heads "
                              f"({self.num_heads}), found {self.hidden_dim}")
        if self.train_mask not in ("straight_through", "sigmoid"):
            raise ConfigError(f"pruners.train_mask: expected straight_through or sigmoid, found {self.train_mask!r}")
        if self.queries not in ("text", "learned"):
            raise ConfigError(f"pruners.queries: expected text or learned, found {self.queries!r}")
        if self.position_slots < 0:
            raise ConfigError(f"pruners.position_slots: expected >= 0, found {self.position_slots}")
        if self.num_learned < 1:
            raise ConfigError(f"pruners.num_learned: expected >= 1, found {self.num_learned}")
        if self.temperature <= 0 or self.gumbel_scale < 0:
            raise ConfigError(f"pruners.temperature / gumbel_scale: expected > 0 / >= 0, found {self.temperature} / "
                              f"{self.gumbel_scale}")

    def ratio_at(self, layer: int) -> float:
        """The keep ratio of the head before ``layer`` (a key of ``layers``)."""
        return self.keep_ratios[self.layers.index(layer)]


class PrunerHead(nn.Module):
    """Keep logits of the vision positions entering one LLM layer."""

    def __init__(self, width: int, cfg: PrunerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision_proj = nn.Linear(width, cfg.hidden_dim)
        self.text_proj = nn.Linear(width, cfg.hidden_dim)
        self.learned = nn.Parameter(torch.randn(cfg.num_learned, cfg.hidden_dim) * 0.02) \
            if cfg.queries == "learned" else None
        self.slots = nn.Embedding(cfg.position_slots, cfg.hidden_dim) if cfg.position_slots else None
        self.cross_attn = nn.MultiheadAttention(cfg.hidden_dim, cfg.num_heads, batch_first=True)
        self.mask_predictor = nn.Sequential(nn.LayerNorm(cfg.hidden_dim), nn.Linear(cfg.hidden_dim, cfg.hidden_dim),
                                            nn.GELU(), nn.Linear(cfg.hidden_dim, 1))

    def forward(self, vision: torch.Tensor, text: torch.Tensor, text_valid: torch.Tensor,
                slot: torch.Tensor | None = None) -> torch.Tensor:
        """Keep logits.

        Args:
            vision: (B, N, D) hidden states of the vision positions (any positions; the caller picks).
            text: (B, T, D) hidden states of the prompt's text positions (unused with learned queries).
            text_valid: (B, T) bool, the real text positions of each row (at least one per row).
            slot: (B, N) long, each vision position's index in its image's block (read with
                ``position_slots`` > 0).

        Returns:
            (B, N) float32 keep logits (higher = keep).
        """
        v = self.vision_proj(vision.float())  # (B, N, H)
        if self.slots is not None and slot is not None:
            v = v + self.slots(slot.clamp(0, self.slots.num_embeddings - 1))
        if self.learned is not None:
            keys = self.learned.unsqueeze(0).expand(v.shape[0], -1, -1)  # (B, Q, H)
            pad = None
        else:
            keys = self.text_proj(text.float())  # (B, T, H)
            pad = ~text_valid
        attended, _ = self.cross_attn(v, keys, keys, key_padding_mask=pad, need_weights=False)  # (B, N, H)
        return self.mask_predictor(v + attended).squeeze(-1)


class LayerPruners(nn.Module):
    """One :class:`PrunerHead` per layer of ``cfg.layers`` over an LLM of hidden width ``width``."""

    def __init__(self, cfg: PrunerConfig, width: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.width = width
        self.heads = nn.ModuleDict({str(layer): PrunerHead(width, cfg) for layer in cfg.layers})

    def head(self, layer: int) -> PrunerHead:
        return self.heads[str(layer)]

    def save(self, out: str | Path) -> Path:
        """Write ``pruners.safetensors`` and ``pruners.json`` into ``out``."""
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(out / WEIGHTS))
        (out / CONFIG).write_text(json.dumps({"pruners": asdict(self.cfg), "width": self.width}, indent=1) + "\n",
                                  encoding="utf-8")
        return out

    @classmethod
    def load(cls, path: str | Path, keep_ratios: list[float] | float | None = None) -> "LayerPruners":
        """The heads saved in ``path`` (strict), in eval mode; ``keep_ratios`` replaces the trained ones
        (one float: the same ratio at every head).

        Raises:
            InputError: the folder holds no pruners or weights that do not fit their config.
        """
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
            raise InputError(f"not a pruners folder (expected {CONFIG} and {WEIGHTS})", path)
        meta = json.loads((path / CONFIG).read_text(encoding="utf-8"))
        if isinstance(keep_ratios, (int, float)):
            keep_ratios = [float(keep_ratios)] * len(meta["pruners"]["layers"])
        cfg = PrunerConfig(**{**meta["pruners"], **({"keep_ratios": keep_ratios} if keep_ratios else {})})
        pruners = cls(cfg, int(meta["width"]))
        try:
            pruners.load_state_dict(load_file(str(path / WEIGHTS)), strict=True)
        except RuntimeError as exc:
            raise InputError(f"the weights do not fit {CONFIG} ({' '.join(str(exc).split())[:200]})", path) from None
        return pruners.eval()


def keep_counts(block_sizes: list[list[int]], ratio: float) -> list[int]:
    """Vision tokens each row keeps: ``sum_i max(1, ceil(N_i * ratio))`` over its images' ``N_i``."""
    return [sum(max(1, math.ceil(n * ratio - 1e-9)) for n in sizes) for sizes in block_sizes]


def top_k_keep(logits: torch.Tensor, candidates: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """(B, L) bool: of each row's ``candidates`` (B, L) bool, the ``counts[b]`` with the largest ``logits``
    (B, L) (ties: the earlier position); every candidate when a row has no more than its count."""
    masked = logits.detach().float().masked_fill(~candidates, float("-inf"))
    order = torch.sort(masked, dim=1, descending=True, stable=True).indices  # (B, L)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    limit = torch.as_tensor(counts, device=logits.device).unsqueeze(1)  # (B, 1)
    return candidates & (ranks < limit)


def gumbel_like(logits: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise of ``logits``' shape: ``-log(-log(U))``."""
    u = torch.rand_like(logits, dtype=torch.float32).clamp(1e-9, 1 - 1e-9)
    return -torch.log(-torch.log(u))
