"""The search-cue heatmap decoder: segment-anything's ``MaskDecoder`` prompted by the ``<LOC>`` state.

Built from ``segment_anything.modeling`` (``MaskDecoder`` + ``TwoWayTransformer``, positional
encoding ``PositionEmbeddingRandom``), trained from scratch as in the reference. What is ours:

- ``image_proj``: the vision tower's patch features (B, C_v, h, w) -> the decoder width D (a 1x1
  convolution, the reference's ``visual_projection``);
- ``prompt_proj``: an MLP from the language model's ``<LOC>`` state (B, D_text) to ``k`` sparse
  prompt embeddings (B, k, D) (the reference's ``text_hidden_fcs_seg``); the dense prompt is zero.

The mask decoder outputs one mask at 4x the feature grid: (B, 4h, 4w) logits over the square
model input (row 0 = input top), plus its IoU / quality prediction (B,).
"""

from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder, TwoWayTransformer
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from torch import nn

from search.vsm.config import VSMConfig


def loc_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Two-layer MLP projecting the ``<LOC>`` state (reference: 4096 -> 4096 -> out)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


class HeatmapDecoder(nn.Module):
    """``<LOC>``-prompted SAM mask decoder.

    Args:
        vision_dim: channels C_v of the vision tower's patch features.
        text_dim: hidden size D_text of the language model (the ``<LOC>`` state).
        cfg: decoder sizes (``decoder_dim``, ``heatmap_depth``, ``heatmap_heads``, ...).
    """

    def __init__(self, vision_dim: int, text_dim: int, cfg: VSMConfig) -> None:
        super().__init__()
        dim = cfg.decoder_dim
        self.prompt_tokens = cfg.prompt_tokens
        self.image_proj = nn.Conv2d(vision_dim, dim, kernel_size=1)
        self.prompt_proj = loc_mlp(text_dim, cfg.loc_mlp_hidden or text_dim, dim * cfg.prompt_tokens)
        self.pe = PositionEmbeddingRandom(dim // 2)
        self.mask_decoder = MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(depth=cfg.heatmap_depth, embedding_dim=dim,
                                          num_heads=cfg.heatmap_heads, mlp_dim=cfg.heatmap_mlp_dim),
            num_multimask_outputs=0,  # one mask token: the search cue
            iou_head_hidden_dim=cfg.quality_head_hidden,
        )

    def forward(self, image_features: torch.Tensor, loc_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap logits for each (patch, ``<LOC>`` state) pair.

        Args:
            image_features: (B, C_v, h, w) float, vision-tower patch features of B patches.
            loc_state: (B, D_text) float, the ``<LOC>`` hidden state of each row.

        Returns:
            ``(heatmap, quality)``: (B, 4h, 4w) float32 logits over the square model input, and
            (B,) float32 predicted IoU of the thresholded heatmap with the target mask.
        """
        if image_features.ndim != 4 or loc_state.ndim != 2 or image_features.shape[0] != loc_state.shape[0]:
            raise ValueError(f"expected image_features (B, C, h, w) and loc_state (B, D) with the same B, found "
                             f"{tuple(image_features.shape)} and {tuple(loc_state.shape)}")
        b, _, h, w = image_features.shape
        emb = self.image_proj(image_features.float())  # (B, D, h, w)
        sparse = self.prompt_proj(loc_state.float()).view(b, self.prompt_tokens, -1)  # (B, k, D)
        pe = self.pe((h, w)).unsqueeze(0)  # (1, D, h, w)
        dense = torch.zeros_like(pe)  # (1, D, h, w): no mask prompt
        masks, quality = [], []
        # MaskDecoder expands ONE image's embedding over its prompts (repeat_interleave by the
        # prompt batch), so each (patch, prompt) pair goes through it on its own.
        for i in range(b):
            mask, iou = self.mask_decoder(image_embeddings=emb[i:i + 1], image_pe=pe,
                                          sparse_prompt_embeddings=sparse[i:i + 1],
                                          dense_prompt_embeddings=dense, multimask_output=False)
            masks.append(mask[:, 0])  # (1, 4h, 4w)
            quality.append(iou[:, 0])  # (1,)
        return torch.cat(masks), torch.cat(quality)
