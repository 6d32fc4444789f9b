"""The SEAL VQA LLM's object path: each visual-working-memory crop becomes 32 object tokens.

The SEAL VQA LLM (``craigwu/seal_vqa_7b``) has two projectors from its CLIP features (second-to-last
layer, CLS dropped: ``(N, P, C)``) into the LM's embedding space:

- the "long" path, ``mm_projector`` (one linear layer), one token per patch: in a converted
  checkpoint this is the llava-hf ``multi_modal_projector``;
- the "short" path, ``mm_projector_object``: LayerNorm -> a Perceiver resampler (32 learned latents
  cross-attending to the patches, Flamingo style) -> Linear, 32 tokens per image. This module is
  that path, :class:`ObjectProjector`, saved as ``object_projector.safetensors`` +
  ``object_projector.json`` beside the converted LLaVA (manifest ``vwm_layout: "seal_objects"``).

The reference lays the prompt out as: the global view through the short path (32 tokens) when the
memory holds search crops, each crop through the long path (256 tokens) when there are at most 2
crops, else through the short path (32 each); see ``shared/reference/vstar-seal.md`` §1.2.

API::

    model, processor = load_llava(dir)
    projector = load_object_projector(dir)               # ObjectProjector, eval mode
    tokens = object_tokens(model, crops, projector)      # (N, 32, D_text)

Equations of one resampler block (latents ``L`` of shape ``(B, 32, C)``, media ``X`` ``(B, P, C)``)::

    Xn, Ln = LN_media(X), LN_latents(L)
    q = Ln Wq ; [k, v] = [Xn; Ln] Wkv       (keys/values over media AND latents)
    L = L + Wout softmax(q k^T / sqrt(d_head)) v          (per head)
    L = L + W2 GELU(W1 LN_ff(L))                           (no biases)

then ``LN_out``. Media get one learned position embedding (``media_pos``) added before the blocks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from seal.core.errors import ConfigError, InputError

if TYPE_CHECKING:
    from transformers import LlavaForConditionalGeneration

WEIGHTS = "object_projector.safetensors"
CONFIG = "object_projector.json"
LAYOUT = "seal_objects"
"""The VWM layout name a converted SEAL VQA checkpoint records in its manifest."""


@dataclass
class ObjectProjectorConfig:
    """Sizes of the SEAL object projector (defaults: the published 7B model)."""

    vision_dim: int = 1024
    """Width of the CLIP features it reads (``mm_hidden_size``)."""
    text_dim: int = 4096
    """Width of the LM embeddings it writes (``hidden_size``)."""
    depth: int = 6
    """Resampler blocks."""
    heads: int = 16
    """Attention heads per block."""
    dim_head: int = 96
    """Width of one head (inner width = heads * dim_head)."""
    num_latents: int = 32
    """Learned latents = output tokens per image."""
    ff_mult: int = 4
    """Feed-forward width = ff_mult * vision_dim."""
    num_media: int = 1
    """Media position embeddings (the reference uses one image per call: 1)."""

    def __post_init__(self) -> None:
        for name in ("vision_dim", "text_dim", "depth", "heads", "dim_head", "num_latents", "ff_mult", "num_media"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"object_projector.{name}: expected a positive integer, found {value!r}")


class ResamplerAttention(nn.Module):
    """Latents attend to ``[media; latents]`` (Flamingo's Perceiver attention, no biases)."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``media`` (B, P, C), ``latents`` (B, Q, C) -> update (B, Q, C)."""
        media, latents = self.norm_media(media), self.norm_latents(latents)
        b, q_len, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([media, latents], dim=1)).chunk(2, dim=-1)

        def heads(x: torch.Tensor) -> torch.Tensor:  # (B, T, H*d) -> (B, H, T, d)
            return x.reshape(b, x.shape[1], self.heads, self.dim_head).transpose(1, 2)

        out = nn.functional.scaled_dot_product_attention(heads(q), heads(k), heads(v))  # (B, H, Q, d)
        return self.to_out(out.transpose(1, 2).reshape(b, q_len, self.heads * self.dim_head))


class ResamplerFeedForward(nn.Module):
    def __init__(self, dim: int, mult: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mult, bias=False)
        self.fc2 = nn.Linear(dim * mult, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))


class ResamplerBlock(nn.Module):
    def __init__(self, cfg: ObjectProjectorConfig) -> None:
        super().__init__()
        self.attn = ResamplerAttention(cfg.vision_dim, cfg.heads, cfg.dim_head)
        self.ff = ResamplerFeedForward(cfg.vision_dim, cfg.ff_mult)


class ObjectProjector(nn.Module):
    """CLIP patch features ``(N, P, vision_dim)`` -> object tokens ``(N, num_latents, text_dim)``."""

    def __init__(self, cfg: ObjectProjectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.vision_dim
        self.in_norm = nn.LayerNorm(c)
        self.latents = nn.Parameter(torch.randn(cfg.num_latents, c))
        self.media_pos = nn.Parameter(torch.randn(cfg.num_media, 1, c))
        self.blocks = nn.ModuleList([ResamplerBlock(cfg) for _ in range(cfg.depth)])
        self.out_norm = nn.LayerNorm(c)
        self.out_proj = nn.Linear(c, cfg.text_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features`` (N, P, vision_dim) float -> (N, num_latents, text_dim)."""
        x = self.in_norm(features) + self.media_pos[0]  # one image per sample: media embedding 0
        latents = self.latents.unsqueeze(0).expand(x.shape[0], -1, -1)  # (N, Q, C)
        for block in self.blocks:
            latents = latents + block.attn(x, latents)
            latents = latents + block.ff(latents)
        return self.out_proj(self.out_norm(latents))


def vision_features(model: "LlavaForConditionalGeneration", pixel_values: torch.Tensor) -> torch.Tensor:
    """The CLIP features both SEAL projectors read: layer ``config.vision_feature_layer`` (the
    reference's ``mm_vision_select_layer``, -2), CLS dropped. ``pixel_values`` (N, 3, S, S)
    CLIP-normalised -> (N, (S/patch)^2, vision_dim)."""
    tower = model.model.vision_tower
    out = tower(pixel_values.to(tower.dtype), output_hidden_states=True)
    return out.hidden_states[model.config.vision_feature_layer][:, 1:]


def object_tokens(model: "LlavaForConditionalGeneration", crops: torch.Tensor,
                  projector: ObjectProjector) -> torch.Tensor:
    """Crops -> SEAL object tokens.

    Args:
        model: the converted SEAL VQA LLaVA (its CLIP tower is used).
        crops: ``(N, 3, S, S)`` CLIP-normalised pixels (the processor's ``pixel_values``; S = the
            tower's image size, 224 for the published model).
        projector: the checkpoint's :class:`ObjectProjector` (:func:`load_object_projector`).

    Returns:
        ``(N, num_latents, text_dim)`` in the projector's dtype: embeddings to splice into the LM
        input in place of each crop's placeholder.
    """
    if crops.ndim != 4 or crops.shape[1] != 3:
        raise ValueError(f"crops: expected (N, 3, S, S) pixels, found shape {tuple(crops.shape)}")
    feats = vision_features(model, crops)
    param = next(projector.parameters())
    return projector(feats.to(param.dtype))


def save_object_projector(projector: ObjectProjector, out_dir: str | Path) -> list[str]:
    """Write ``object_projector.safetensors`` + ``object_projector.json``; returns the file names."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    save_file({k: v.contiguous() for k, v in projector.state_dict().items()}, str(out / WEIGHTS))
    (out / CONFIG).write_text(json.dumps(asdict(projector.cfg), indent=2) + "\n", encoding="utf-8")
    return [WEIGHTS, CONFIG]


def load_object_projector(path: str | Path, dtype: torch.dtype | None = None,
                          device: str = "cpu") -> ObjectProjector:
    """Load the object projector of a converted SEAL VQA checkpoint directory, strictly.

    Raises:
        InputError: a file is missing or damaged, or the weights do not match the config.
    """
    from safetensors.torch import load_file

    root = Path(path)
    for name in (CONFIG, WEIGHTS):
        if not (root / name).is_file():
            raise InputError(f"expected {name} (the SEAL object projector), found none", root / name)
    try:
        cfg = ObjectProjectorConfig(**json.loads((root / CONFIG).read_text(encoding="utf-8")))
        state = load_file(str(root / WEIGHTS))
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"cannot read the object projector ({type(exc).__name__}: {exc})", root) from None
    projector = ObjectProjector(cfg)
    try:
        projector.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"object projector weights do not match {CONFIG}: {str(exc).splitlines()[0]}",
                         root / WEIGHTS) from None
    return projector.to(device=device, dtype=dtype or torch.float32).eval()
