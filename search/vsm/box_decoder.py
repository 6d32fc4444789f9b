"""The target box decoder: DETR-style learned queries conditioned on the ``<LOC>`` state.

Unlike the reference (a frozen OWL-ViT box head whose 2304 patch boxes were only re-scored), the
boxes here are regressed by trained layers: ``Q`` learned query embeddings, each plus an MLP
projection of the ``<LOC>`` state, cross-attend the projected patch features (with SAM's random
Fourier positional encoding) in a small ``nn.TransformerDecoder``; two heads read each query:

- boxes: (B, Q, 4) ``cxcywh`` normalised to [0, 1] of the square model input (sigmoid output);
- logits: (B, Q), sigmoid = probability that the target is in the patch *and* is that box. A patch
  without the target should score every query low (trained with absent-target negatives).
"""

from __future__ import annotations

import math

import torch
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from torch import nn

from search.vsm.config import VSMConfig
from search.vsm.heatmap_decoder import loc_mlp

PRIOR_PROBABILITY = 0.01
"""Initial box score (focal-loss prior, as in RetinaNet / DETR variants): an untrained decoder
claims nothing."""


class BoxDecoder(nn.Module):
    """``<LOC>``-conditioned DETR box decoder.

    Args:
        vision_dim: channels C_v of the vision tower's patch features.
        text_dim: hidden size D_text of the language model (the ``<LOC>`` state).
        cfg: sizes (``decoder_dim``, ``box_queries``, ``box_layers``, ``box_heads``, ``box_mlp_dim``).
    """

    def __init__(self, vision_dim: int, text_dim: int, cfg: VSMConfig) -> None:
        super().__init__()
        dim = cfg.decoder_dim
        self.image_proj = nn.Conv2d(vision_dim, dim, kernel_size=1)
        self.pe = PositionEmbeddingRandom(dim // 2)
        self.queries = nn.Embedding(cfg.box_queries, dim)
        self.loc_proj = loc_mlp(text_dim, cfg.loc_mlp_hidden or text_dim, dim)
        layer = nn.TransformerDecoderLayer(dim, cfg.box_heads, cfg.box_mlp_dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.box_layers, norm=nn.LayerNorm(dim))
        self.box_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim),
                                      nn.ReLU(inplace=True), nn.Linear(dim, 4))
        self.class_head = nn.Linear(dim, 1)
        nn.init.constant_(self.class_head.bias, -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY))

    def forward(self, image_features: torch.Tensor, loc_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate boxes and their scores for each (patch, ``<LOC>`` state) pair.

        Args:
            image_features: (B, C_v, h, w) float, vision-tower patch features of B patches.
            loc_state: (B, D_text) float, the ``<LOC>`` hidden state of each row.

        Returns:
            ``(boxes, logits)``: (B, Q, 4) float32 ``cxcywh`` in [0, 1] of the model input frame, and
            (B, Q) float32 logits (sigmoid = probability the target is that box).
        """
        if image_features.ndim != 4 or loc_state.ndim != 2 or image_features.shape[0] != loc_state.shape[0]:
            raise ValueError(f"expected image_features (B, C, h, w) and loc_state (B, D) with the same B, found "
                             f"{tuple(image_features.shape)} and {tuple(loc_state.shape)}")
        b, _, h, w = image_features.shape
        emb = self.image_proj(image_features.float()) + self.pe((h, w)).unsqueeze(0)  # (B, D, h, w)
        memory = emb.flatten(2).transpose(1, 2)  # (B, h*w, D)
        tgt = self.queries.weight.unsqueeze(0) + self.loc_proj(loc_state.float()).unsqueeze(1)  # (B, Q, D)
        hs = self.decoder(tgt, memory)  # (B, Q, D)
        boxes = self.box_head(hs).sigmoid()  # (B, Q, 4) cxcywh in [0, 1]
        logits = self.class_head(hs).squeeze(-1)  # (B, Q)
        return boxes, logits
