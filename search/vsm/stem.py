"""The detector's convolutional stem: dense local features of the patch for the two decoders.

The reference VSM feeds its decoders from a second vision encoder (OWL-ViT), not from LLaVA's
CLIP tower. Ours is a small convolutional stem (torchvision ``Conv2dNormActivation`` blocks) whose
output has the vision tower's grid and width, added to the tower's patch features: a from-scratch
ViT with 16 px patches learns small shapes and fine patterns slowly on a CPU budget, convolutions
learn them quickly. The language model still reads only the tower's tokens (through the projector).

Shapes: ``(B, 3, S, S)`` normalised ``pixel_values`` -> ``(B, C_v, g, g)`` with ``g = S / stride``
(the vision patch side: 16 -> four stride-2 stages, 8 -> the last three, ...).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def _group_norm(channels: int) -> nn.Module:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ConvStem(nn.Module):
    """log2(stride) stride-2 stages, each a 3x3 conv + GroupNorm + GELU, all but the first followed
    by one more 3x3 conv at that scale; a 1x1 projection to ``out_dim`` (zero-initialised, so a
    fresh stem leaves the tower's features unchanged).

    Args:
        out_dim: channels of the output (the vision tower's hidden size C_v).
        widths: channels of the stages for stride 16; a smaller stride uses the last ones.
        stride: total downsampling (the vision patch side), a power of two.
    """

    def __init__(self, out_dim: int, widths: Sequence[int] = (24, 48, 96, 128), stride: int = 16) -> None:
        super().__init__()
        from torchvision.ops import Conv2dNormActivation

        stages = int(round(math.log2(stride))) if stride > 1 else 0
        if stride < 2 or 2 ** stages != stride:
            raise ValueError(f"ConvStem: stride must be a power of two >= 2, found {stride}")
        if len(widths) < stages:
            raise ValueError(f"ConvStem: expected at least {stages} stage widths for stride {stride}, "
                             f"found {list(widths)}")
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(list(widths)[len(widths) - stages:]):
            layers.append(Conv2dNormActivation(c_in, c, 3, stride=2, norm_layer=_group_norm,
                                               activation_layer=nn.GELU, inplace=None))
            if i > 0:
                layers.append(Conv2dNormActivation(c, c, 3, norm_layer=_group_norm, activation_layer=nn.GELU,
                                                   inplace=None))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, out_dim, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, out_dim, S/16, S/16)."""
        return self.proj(self.body(pixel_values))
