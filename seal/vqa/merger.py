"""The learnable token merger (seed 002, phase 1): ``N`` vision-tower tokens -> ``M`` merged tokens.

It sits between the vision tower and the projector (:mod:`seal.vqa.merged_forward` does the glue):

1. **encode**: each tower token ``x_n`` (width ``D_v``) is projected to ``h_n`` (width ``H``); the
   question-aware variant adds a cross-attention from the tokens to the question's text embeddings
   (width ``D_t``), so what counts as important depends on what is asked;
2. **importance**: an MLP scores every token, ``s_n`` (a logit);
3. **centres**: the ``M`` tokens with the largest ``s_n + g_n`` (``g_n`` Gumbel noise in training,
   0 at evaluation) are the centres, kept in their original (raster) order. In training the choice is
   straight-through: each merged token is multiplied by a gate that is 1 in the forward pass and
   carries the gradient of ``softmax((s + g) / tau)`` back to the scorer;
4. **assignment**: every token is softly assigned to the centres by the cosine similarity of the
   shared projection ``P h`` divided by the temperature ``tau``: ``A = softmax(cos(P h_n, P h_c) / tau)``
   over the centres. A centre is always most similar to itself (cosine 1), so no centre is empty and,
   as ``tau -> 0``, each centre keeps at least its own token (with ``M = N`` the assignment becomes
   the identity);
5. **merge**: each merged token is the ``A``-weighted mean of the tower tokens assigned to it,
   ``(B, M, D_v)``, in the tower's feature space (the projector reads it as it reads tower tokens).

The temperature anneals during training (:func:`anneal_temperature`: linear from
``temperature_start`` to ``temperature_end`` over ``anneal_steps``, then constant); the module keeps
the current one in a buffer, so an exported merger evaluates at the temperature it ended training with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from seal.core.errors import ConfigError
from seal.vqa.merger_config import VARIANTS, MergerConfig, anneal_temperature

if TYPE_CHECKING:
    from seal.core.manifest import Manifest

WEIGHTS = "model.safetensors"
"""The exported merger's weights file (beside its ``manifest.json``, kind ``merger``)."""
KIND = "merger"
"""The manifest kind of an exported merger."""


@dataclass
class MergeOutput:
    """What :meth:`TokenMerger.forward` returns (``B`` images, ``N`` tower tokens, ``M`` centres).

    Attributes:
        merged: (B, M, D_v) the merged tokens, centres in raster order.
        assignment: (B, N, M) soft assignment of each token to the centres (rows sum to 1).
        centres: (B, M) int64 indices of the centre tokens, ascending.
        importance: (B, N) importance logits ``s_n``.
    """

    merged: torch.Tensor
    assignment: torch.Tensor
    centres: torch.Tensor
    importance: torch.Tensor


class TokenMerger(nn.Module):
    """Merges ``N`` tower tokens into ``M`` (see the module docstring); ``cfg.vision_dim`` (and for
    ``question_aware`` ``cfg.text_dim``) must be set."""

    def __init__(self, cfg: MergerConfig) -> None:
        super().__init__()
        if cfg.vision_dim < 1 or (cfg.variant == "question_aware" and cfg.text_dim < 1):
            raise ConfigError(f"merger.vision_dim / text_dim: expected the model's widths, found {cfg.vision_dim} / "
                              f"{cfg.text_dim}")
        self.cfg = cfg
        h = cfg.hidden_dim
        self.encode = nn.Sequential(nn.LayerNorm(cfg.vision_dim), nn.Linear(cfg.vision_dim, h))
        self.cross_attention: nn.MultiheadAttention | None = None
        if cfg.variant == "question_aware":
            self.text_norm = nn.LayerNorm(cfg.text_dim)
            self.cross_attention = nn.MultiheadAttention(h, cfg.heads, kdim=cfg.text_dim, vdim=cfg.text_dim,
                                                         batch_first=True)
            self.cross_norm = nn.LayerNorm(h)
        self.scorer = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.Linear(h, 1))
        self.similarity = nn.Linear(h, h, bias=False)
        self.register_buffer("temperature", torch.tensor(float(cfg.temperature_start)))

    def set_temperature(self, value: float) -> None:
        """Use ``value`` (> 0) from now on, for the assignment and the training gate."""
        if value <= 0:
            raise ValueError(f"temperature: expected > 0, found {value}")
        self.temperature.fill_(float(value))

    def forward(self, features: torch.Tensor, tokens: int | None = None, text: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> MergeOutput:
        """Merge each image's tower tokens.

        Args:
            features: (B, N, D_v) tower features (the layer the projector reads), any float dtype.
            tokens: ``M`` (1 <= M <= N); default ``cfg.tokens`` (clamped to ``N``).
            text: question_aware only, required: (B, T, D_t) the question's text embeddings, one row
                per image (an image's row is its prompt's question).
            text_mask: (B, T) bool, True on real text tokens (default: all real).

        Returns:
            :class:`MergeOutput`; in training mode the centres are drawn with Gumbel noise and the
            merged tokens carry the straight-through gate, in eval mode plain top-k.
        """
        b, n, _ = features.shape
        m = min(self.cfg.tokens, n) if tokens is None else int(tokens)
        if not 1 <= m <= n:
            raise ValueError(f"tokens: expected 1..{n}, found {m}")
        x = features.float()
        h = self.encode(x)  # (B, N, H)
        if self.cross_attention is not None:
            if text is None:
                raise ValueError("the question_aware merger needs the question's text embeddings")
            pad = None if text_mask is None else ~text_mask.bool()  # (B, T) True = ignore
            attended, _ = self.cross_attention(h, self.text_norm(text.float()), self.text_norm(text.float()),
                                               key_padding_mask=pad, need_weights=False)
            h = self.cross_norm(h + attended)  # (B, N, H)
        importance = self.scorer(h).squeeze(-1)  # (B, N)
        tau = float(self.temperature)
        perturbed = importance
        if self.training:
            uniform = torch.rand_like(importance).clamp(1e-9, 1 - 1e-9)
            perturbed = importance - torch.log(-torch.log(uniform))  # + Gumbel(0, 1)
        centres = torch.topk(perturbed, m, dim=-1).indices.sort(dim=-1).values  # (B, M) ascending
        z = nn.functional.normalize(self.similarity(h), dim=-1)  # (B, N, H)
        zc = torch.gather(z, 1, centres[..., None].expand(-1, -1, z.shape[-1]))  # (B, M, H)
        assignment = torch.softmax(z @ zc.transpose(1, 2) / tau, dim=-1)  # (B, N, M)
        mass = assignment.sum(dim=1)  # (B, M) >= the centre's own share
        merged = assignment.transpose(1, 2) @ x / mass.clamp_min(1e-6)[..., None]  # (B, M, D_v) weighted mean
        if self.training:  # straight-through: forward value 1, gradient of the soft choice
            soft = torch.softmax(perturbed / tau, dim=-1)  # (B, N)
            chosen = torch.gather(soft, 1, centres)  # (B, M)
            merged = merged * (1.0 + chosen - chosen.detach())[..., None]
        return MergeOutput(merged=merged.to(features.dtype), assignment=assignment, centres=centres,
                           importance=importance)


def merge_sparsity_loss(importance: torch.Tensor, tokens: int) -> torch.Tensor:
    """The seed's merge-sparsity term ``(kept - target)^2``, made differentiable: ``kept`` is the
    expected number of tokens the scorer keeps, ``sum_n sigmoid(s_n)``, ``target`` the ``M`` centres
    chosen; divided by ``N`` so the term is in [0, 1]. ``importance``: (B, N) logits; returns a scalar,
    the mean over the images."""
    n = importance.shape[-1]
    kept = torch.sigmoid(importance.float()).sum(dim=-1)  # (B,)
    return ((kept - tokens) / n).pow(2).mean()


def save_merger(merger: TokenMerger, path: str | Path, trained_against: dict[str, str] | None = None,
                recipe: dict | None = None, extra: dict | None = None) -> "Manifest":
    """Write ``merger``'s weights (:data:`WEIGHTS`, temperature included) and a manifest (kind
    :data:`KIND`, config ``{"merger": its MergerConfig, **extra}``) into ``path``."""
    from safetensors.torch import save_file

    from seal.core.manifest import MANIFEST, write_manifest

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in merger.state_dict().items()}, str(root / WEIGHTS))
    return write_manifest(root, KIND, {"merger": asdict(merger.cfg), **(extra or {})}, [WEIGHTS],
                          trained_against=trained_against, recipe=recipe)


def load_merger(path: str | Path, device: str | torch.device = "cpu") -> TokenMerger:
    """The exported merger at ``path`` in eval mode, loaded strictly from its manifest's config.

    Raises:
        InputError: no merger manifest, a listed file missing, or weights that do not fit the config.
    """
    from safetensors.torch import load_file

    from seal.core.errors import InputError
    from seal.core.manifest import read_manifest

    manifest = read_manifest(path, KIND)
    try:
        merger = TokenMerger(MergerConfig(**manifest.config["merger"]))
        merger.load_state_dict(load_file(str(Path(path) / WEIGHTS)), strict=True)
    except (KeyError, TypeError, RuntimeError, ConfigError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise InputError(f"the merger's weights do not fit its manifest's config ({first})", Path(path)) from None
    return merger.to(device).eval()


__all__ = ["KIND", "VARIANTS", "WEIGHTS", "MergeOutput", "MergerConfig", "TokenMerger", "anneal_temperature",
           "load_merger", "merge_sparsity_loss", "save_merger"]
