"""The SEAL VSM's two heads on the ``[LOC]`` state, built from library modules.

- **Detector** (``VisualSearch/model/owlvit/owlvit.py``): transformers' ``OwlViTVisionModel`` (the
  OWL-ViT B/16 tower, 768 px input, 48 x 48 patches), OWL-ViT's ``OwlViTClassPredictionHead`` and
  ``OwlViTBoxPredictionHead`` and its ``layer_norm``. The class query is not CLIP text but
  ``loc_to_det([LOC] state)``; boxes come from the class-agnostic box head plus the grid bias.
- **Heatmap** (SAM mask decoder trained from scratch): ``visual_projection`` (OWL width -> 256)
  turns the OWL feature map into the image embedding; segment-anything's ``PromptEncoder`` gives
  the dense positional encoding and the "no mask" embedding, the sparse prompt is
  ``loc_to_seg([LOC] state)``; segment-anything's ``MaskDecoder`` / ``TwoWayTransformer`` with
  one change the reference made: its output upscaling is bilinear x2 + 3x3 conv (:class:`Upsample2x`)
  instead of transposed convolutions.

The heads run in their own dtype (float32 as loaded: segment-anything's positional encoding needs
one dtype throughout); inputs are cast to it. Shapes: ``feature_map`` (B, g, g, C_owl); ``loc``
(B, D_lm); boxes ``cxcywh`` in [0, 1] of the detector input (the region stretched to a square);
heatmap logits (B, 4g, 4g) over the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seal.core.errors import ConfigError


@dataclass
class SealVSMHeadsConfig:
    """Sizes of the heads (defaults: the published ``seal_vsm_7b``)."""

    lm_hidden: int = 4096
    """Width of the LM's ``[LOC]`` state."""
    det_dim: int = 512
    """``out_dim``: width of the detection query (OWL-ViT's text width)."""
    sam_dim: int = 256
    """SAM prompt / transformer width."""
    sam_depth: int = 2
    """TwoWayTransformer blocks."""
    sam_mlp_dim: int = 2048
    """TwoWayTransformer MLP width."""
    sam_heads: int = 8
    """TwoWayTransformer attention heads."""
    iou_hidden: int = 256
    """Hidden width of the (unused) IoU head; kept so the weights load strictly."""
    mask_in_chans: int = 16
    """PromptEncoder mask-input channels (unused at inference; kept for strict loading)."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"seal_vsm.heads.{name}: expected a positive integer, found {value!r}")
        if self.sam_dim % (2 * self.sam_heads) or self.sam_dim % 8:
            raise ConfigError(f"seal_vsm.heads.sam_dim: {self.sam_dim} must be a multiple of 8 and of "
                              f"2 * sam_heads ({2 * self.sam_heads})")


class Upsample2x(nn.Module):
    """Bilinear x2 upsampling then a 3x3 convolution (the reference's ``Upsample``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x.float(), scale_factor=2.0, mode="bilinear").to(x.dtype)
        return self.conv(x)


def loc_mlp(d_in: int, d_out: int) -> nn.Sequential:
    """``Linear -> ReLU -> Linear`` from the ``[LOC]`` state (the reference's ``text_hidden_fcs``)."""
    return nn.Sequential(nn.Linear(d_in, d_in), nn.ReLU(), nn.Linear(d_in, d_out))


class SealVSMHeads(nn.Module):
    """Detector + heatmap heads over an OWL-ViT feature map (see the module docstring).

    Args:
        cfg: head sizes.
        owl_config: the ``OwlViTVisionConfig`` of the tower (width, grid and input size).
    """

    def __init__(self, cfg: SealVSMHeadsConfig, owl_config) -> None:  # noqa: ANN001 (transformers config)
        super().__init__()
        from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
        from segment_anything.modeling.common import LayerNorm2d
        from transformers import OwlViTConfig
        from transformers.models.owlvit.modeling_owlvit import OwlViTBoxPredictionHead, OwlViTClassPredictionHead

        self.cfg = cfg
        self.grid = owl_config.image_size // owl_config.patch_size
        c = owl_config.hidden_size
        full = OwlViTConfig(text_config={"hidden_size": cfg.det_dim}, vision_config=owl_config.to_dict())
        self.class_head = OwlViTClassPredictionHead(full)
        self.box_head = OwlViTBoxPredictionHead(full)
        self.layer_norm = nn.LayerNorm(c, eps=owl_config.layer_norm_eps)
        self.visual_projection = nn.Linear(c, cfg.sam_dim, bias=False)
        side = owl_config.image_size
        self.prompt_encoder = PromptEncoder(embed_dim=cfg.sam_dim, image_embedding_size=(self.grid, self.grid),
                                            input_image_size=(side, side), mask_in_chans=cfg.mask_in_chans)
        d = cfg.sam_dim
        self.mask_decoder = MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=cfg.sam_depth, embedding_dim=d, mlp_dim=cfg.sam_mlp_dim,
                                          num_heads=cfg.sam_heads),
            transformer_dim=d, iou_head_depth=3, iou_head_hidden_dim=cfg.iou_hidden)
        self.mask_decoder.output_upscaling = nn.Sequential(
            Upsample2x(d, d // 4), LayerNorm2d(d // 4), nn.GELU(), Upsample2x(d // 4, d // 8), nn.GELU())
        self.loc_to_det = loc_mlp(cfg.lm_hidden, cfg.det_dim)
        self.loc_to_seg = loc_mlp(cfg.lm_hidden, d)
        self.register_buffer("box_bias", _box_bias(self.grid), persistent=False)

    def feature_map(self, last_hidden_state: torch.Tensor, post_layernorm: nn.Module) -> torch.Tensor:
        """OWL tower output ``(B, 1 + g*g, C)`` -> feature map ``(B, g, g, C)``: post-LN, patch
        tokens times the class token, then ``layer_norm`` (OWL-ViT's image embedder)."""
        x = post_layernorm(last_hidden_state)
        x = self.layer_norm(x[:, 1:] * x[:, :1])
        return x.reshape(x.shape[0], self.grid, self.grid, x.shape[-1])

    def detect(self, feature_map: torch.Tensor, loc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, g*g), boxes (B, g*g, 4) cxcywh in [0, 1])`` for the query ``loc`` (B, D_lm)."""
        dt = self.visual_projection.weight.dtype
        b, g, _, c = feature_map.shape
        feats = feature_map.to(dt).reshape(b, g * g, c)
        query = self.loc_to_det(loc.to(dt))[:, None]  # (B, 1, det_dim)
        logits, _ = self.class_head(feats, query, None)
        boxes = torch.sigmoid(self.box_head(feats) + self.box_bias.to(dt))
        return logits[..., 0], boxes

    def heatmap(self, feature_map: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
        """Mask logits ``(B, 4g, 4g)`` over the detector input for the prompt ``loc`` (B, D_lm)."""
        dt = self.visual_projection.weight.dtype
        sparse = self.loc_to_seg(loc.to(dt))[:, None]  # (B, 1, sam_dim)
        embed = self.visual_projection(feature_map.to(dt)).permute(0, 3, 1, 2)  # (B, sam_dim, g, g)
        pe = self.prompt_encoder.get_dense_pe()
        out = []
        for i in range(embed.shape[0]):  # SAM's decoder takes one image embedding per call
            _, dense = self.prompt_encoder(points=None, boxes=None, masks=None)
            masks, _ = self.mask_decoder(image_embeddings=embed[i:i + 1], image_pe=pe,
                                         sparse_prompt_embeddings=sparse[i:i + 1],
                                         dense_prompt_embeddings=dense, multimask_output=False)
            out.append(masks[:, 0])
        return torch.cat(out, 0)


def _box_bias(grid: int) -> torch.Tensor:
    """OWL-ViT's box bias ``(g*g, 4)``: box centres biased to their patch's corner, sizes to 1/g."""
    from transformers import OwlViTForObjectDetection

    coords = OwlViTForObjectDetection.normalize_grid_corner_coordinates(grid, grid).reshape(-1, 2)
    coords = coords.clip(0.0, 1.0)
    xy = torch.log(coords + 1e-4) - torch.log1p(-coords + 1e-4)
    size = torch.full_like(xy, 1.0 / grid)
    wh = torch.log(size + 1e-4) - torch.log1p(-size + 1e-4)
    return torch.cat([xy, wh], dim=-1)
