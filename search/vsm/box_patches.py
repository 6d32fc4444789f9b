"""The per-patch box decoder: one candidate box per image-grid cell, scored against ``<LOC>``.

This is the reference VSM's detection design (OWL-ViT: every vision patch predicts a box around
its own location and a logit from its similarity to the query embedding), with every part trained
here: the box head regresses offsets from a per-cell prior box (the cell's centre, a default size),
so boxes are learned, not read off a frozen head. It converges far faster than free DETR queries,
because each cell only has to describe what is around it; training is still DETR's set loss
(Hungarian matching, focal + L1 + GIoU) over the g*g candidates.

Shapes: image features (B, C_v, g, g), ``<LOC>`` state (B, D_text) -> boxes (B, g*g, 4) ``cxcywh`` in
[0, 1] of the square model input, logits (B, g*g).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from search.vsm.box_decoder import PRIOR_PROBABILITY
from search.vsm.config import VSMConfig
from search.vsm.heatmap_decoder import loc_mlp

PRIOR_BOX_CELLS = 1.5
"""Side of a cell's prior box, in cells (before the regressed offset)."""


def _inverse_sigmoid(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(1e-4, 1 - 1e-4)
    return torch.log(x / (1 - x))


class PatchBoxDecoder(nn.Module):
    """``<LOC>``-conditioned per-cell detector (OWL-ViT style heads, trained from scratch).

    Args:
        vision_dim: channels C_v of the image features.
        text_dim: hidden size D_text of the language model (the ``<LOC>`` state).
        cfg: ``decoder_dim`` (D), ``box_mlp_dim``, ``loc_mlp_hidden``.
    """

    def __init__(self, vision_dim: int, text_dim: int, cfg: VSMConfig) -> None:
        super().__init__()
        dim = cfg.decoder_dim
        self.image_proj = nn.Sequential(nn.Conv2d(vision_dim, dim, 1), nn.GELU(),
                                        nn.Conv2d(dim, dim, 3, padding=1), nn.GELU())
        self.box_head = nn.Sequential(nn.Linear(dim, cfg.box_mlp_dim), nn.GELU(), nn.Linear(cfg.box_mlp_dim, 4))
        nn.init.zeros_(self.box_head[-1].weight)
        nn.init.zeros_(self.box_head[-1].bias)
        self.film = loc_mlp(text_dim, cfg.loc_mlp_hidden or text_dim, 2 * dim)
        self.class_embed = nn.Linear(dim, dim)
        self.query = loc_mlp(text_dim, cfg.loc_mlp_hidden or text_dim, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_shift = nn.Parameter(torch.tensor(-math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)))

    def box_prior(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """(h*w, 4) ``cxcywh`` prior of each cell (row-major), in inverse-sigmoid space."""
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        cx = (xs.flatten().float() + 0.5) / w
        cy = (ys.flatten().float() + 0.5) / h
        size = torch.stack([torch.full_like(cx, PRIOR_BOX_CELLS / w), torch.full_like(cy, PRIOR_BOX_CELLS / h)], 1)
        return _inverse_sigmoid(torch.cat([torch.stack([cx, cy], 1), size], 1))

    def forward(self, image_features: torch.Tensor, loc_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate boxes and their scores for each (patch, ``<LOC>`` state) pair.

        Args:
            image_features: (B, C_v, h, w) float image features of B patches.
            loc_state: (B, D_text) float, the ``<LOC>`` hidden state of each row.

        Returns:
            ``(boxes, logits)``: (B, h*w, 4) float32 ``cxcywh`` in [0, 1] of the model input frame,
            and (B, h*w) float32 logits (sigmoid = probability that the target is that box).
        """
        if image_features.ndim != 4 or loc_state.ndim != 2 or image_features.shape[0] != loc_state.shape[0]:
            raise ValueError(f"expected image_features (B, C, h, w) and loc_state (B, D) with the same B, found "
                             f"{tuple(image_features.shape)} and {tuple(loc_state.shape)}")
        b, _, h, w = image_features.shape
        loc = loc_state.float()
        cells = self.image_proj(image_features.float()).flatten(2).transpose(1, 2)  # (B, h*w, D)
        gamma, beta = self.film(loc).chunk(2, dim=-1)  # (B, D) each: the target modulates the cells
        cells = cells * (1 + gamma.unsqueeze(1)) + beta.unsqueeze(1)
        boxes = (self.box_head(cells) + self.box_prior(h, w, cells.device)).sigmoid()  # (B, h*w, 4)
        emb = nn.functional.normalize(self.class_embed(cells), dim=-1)  # (B, h*w, D)
        q = nn.functional.normalize(self.query(loc), dim=-1)  # (B, D)
        logits = (emb @ q.unsqueeze(-1)).squeeze(-1) * self.logit_scale.exp() + self.logit_shift  # (B, h*w)
        return boxes, logits
