"""Vision adapters of the search model: one per VLM family, the same square-patch interface for all.

The VSM reads a base VLM in three ways, and the families differ in each:

1. **Patch -> pixels** (:meth:`VisionFamily.preprocess`): (S, S, 3) uint8 patches -> (B, 3, S, S)
   float ``pixel_values``, normalised by the checkpoint's own image processor.
2. **Pixels -> features** (:meth:`VisionFamily.encode`): the decoders' grid ``vision`` (B, C_v, g, g)
   and the LM's image tokens ``projected`` (B, N, D_text).
3. **Prompt + tokens -> hidden states** (:meth:`VisionFamily.hidden_states`): the LM run with the N
   projected tokens scattered into the N image-token positions of each prompt row (transformers'
   ``mm_encoder_outputs``: the model's own placeholder check and scatter), (B, T, D_text).

Families (``config.json`` ``model_type``):

- ``llava`` (LLaVA-1.5: CLIP tower, fixed square input): S = the tower's ``image_size``, g = S /
  ``patch_size``; grid = the ``vision_feature_layer`` hidden state without CLS; N = g*g (+1 with
  the ``full`` strategy). The path the shipped ``checkpoints/vsm_tiny`` was trained on, unchanged.
- ``llava_onevision`` (SigLIP tower, no CLS; any-resolution tiling): a VSM patch is the
  **base-resolution single tile** only (no any-res tiles), S = the tower's ``image_size``; grid =
  the ``vision_feature_layer`` hidden state (a list of layers is concatenated along channels, so
  C_v = width x layers); N = the selected tokens + the model's ``image_newline`` token, the layout
  OneVision gives a single-tile image.
- ``qwen2_5_vl`` (the ``visual`` tower with window attention and a 2x2 patch merger): S is
  ``VSMConfig.input_size`` or 16 merged tokens a side (448 px for patch 14, merge 2), a multiple of
  ``patch_size * spatial_merge_size`` kept inside the image processor's pixel range; grid = the
  **pre-merge** last-block features (C_v = the tower's width, g = S / ``patch_size``, twice the
  merged grid's side), put back in raster order; N = (S / (patch_size * merge))^2 merged tokens.
  Positions: the LM gets the model's own 3-D M-RoPE position ids (``get_rope_index`` over the
  image's ``(1, g, g)`` grid), exactly as a Qwen2.5-VL prompt with that image would.

No instance holds the backbone: every method takes it, so a merge or a shared base may replace it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
import torch

from seal.core.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

QWEN_DEFAULT_MERGED_SIDE = 16
"""Qwen2.5-VL: merged tokens per side of a VSM patch when ``vsm.input_size`` is 0 (256 LM tokens)."""


class VisionFamily:
    """Static facts of one family's square patches; methods take the backbone.

    Attributes:
        input_size: side S (px) of the square patch.
        grid_size: side g of the decoders' feature grid.
        patch_stride: S / g, the grid cell in pixels.
        vision_dim: channels C_v of the decoders' grid.
        image_tokens: LM tokens N one patch occupies.
        image_token: the processor's image placeholder string; ``image_token_id`` its id.
    """

    model_type: ClassVar[str] = ""

    def __init__(self, config: Any, processor: Any, input_size: int = 0) -> None:
        self.config = config
        self.processor = processor
        self.image_token = str(getattr(processor, "image_token", None) or "<image>")
        self.image_token_id = int(config.image_token_id)
        found = processor.tokenizer.convert_tokens_to_ids(self.image_token)
        if found != self.image_token_id:
            raise ValueError(f"the tokenizer maps {self.image_token} to id {found}, config.json says "
                             f"image_token_id {self.image_token_id}")
        self.input_size, self.grid_size, self.vision_dim, self.image_tokens = self._sizes(input_size)
        self.patch_stride = self.input_size // self.grid_size

    def _sizes(self, input_size: int) -> tuple[int, int, int, int]:
        raise NotImplementedError

    def _fixed_side(self, input_size: int) -> int:
        side = int(self.config.vision_config.image_size)
        if input_size not in (0, side):
            raise ConfigError(f"vsm.input_size: a {self.model_type} tower takes {side} px patches, found {input_size} "
                             "(leave it 0)")
        return side

    # ---- the three steps -----------------------------------------------------------------------
    def preprocess(self, patches: Sequence[np.ndarray]) -> torch.Tensor:
        """(S, S, 3) uint8 RGB patches -> (B, 3, S, S) float32 ``pixel_values`` (CPU)."""
        return self.processor.image_processor(images=list(patches), return_tensors="pt")["pixel_values"]

    def encode(self, backbone: "nn.Module", pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> ``(vision (B, C_v, g, g), projected (B, N, D_text))``."""
        raise NotImplementedError

    def hidden_states(self, backbone: "nn.Module", input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      projected: "torch.Tensor | Sequence[torch.Tensor]") -> torch.Tensor:
        """(B, T) prompts with N image tokens each + (B, N, D_text) -> (B, T, D_text) last hidden states.
        ``projected`` may also be B tensors (K_i, D_text) for prompts holding K_i image tokens each (a
        token cut, :mod:`search.vsm.token_cut`; 1-D positions only, the ``llava`` family)."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        images = BaseModelOutputWithPooling(pooler_output=list(projected))
        out = backbone.model(input_ids=input_ids, attention_mask=attention_mask, mm_encoder_outputs={"image": images},
                             **self._position_kwargs(backbone, input_ids, attention_mask))
        return out.last_hidden_state

    def _position_kwargs(self, backbone: "nn.Module", input_ids: torch.Tensor,
                         attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Position arguments of the LM forward (none: the model's own 1-D positions)."""
        return {}

    def lora_target_regex(self, names: Sequence[str]) -> str:
        """peft ``target_modules`` regex: the language model's ``names`` projections, never the vision
        tower (all three families name the decoder ``model.language_model.layers.*``)."""
        return lora_target_regex(names)

    def _to_grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, g*g, C) raster-order tokens -> (B, C, g, g)."""
        b, n, c = tokens.shape
        g = self.grid_size
        if n != g * g:
            raise ValueError(f"vision tower gave {n} patch tokens, expected {g}x{g}")
        return tokens.transpose(1, 2).reshape(b, c, g, g)


class LlavaFamily(VisionFamily):
    """LLaVA-1.5 (``LlavaForConditionalGeneration``)."""

    model_type = "llava"

    def _sizes(self, input_size: int) -> tuple[int, int, int, int]:
        if not isinstance(self.config.vision_feature_layer, int):
            raise ValueError(f"vision_feature_layer: expected one int layer, found {self.config.vision_feature_layer}")
        side = self._fixed_side(input_size)
        g = side // int(self.config.vision_config.patch_size)
        full = self.config.vision_feature_select_strategy == "full"
        return side, g, int(self.config.vision_config.hidden_size), g * g + int(full)

    def encode(self, backbone: "nn.Module", pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = backbone.model.get_image_features(pixel_values=pixel_values, return_dict=True)
        tokens = out.hidden_states[self.config.vision_feature_layer][:, 1:]  # (B, g*g, C_v), CLS dropped
        projected = torch.stack(list(out.pooler_output))  # (B, N, D_text)
        return self._to_grid(tokens), projected


class OneVisionFamily(VisionFamily):
    """LLaVA-OneVision (``LlavaOnevisionForConditionalGeneration``): base-resolution single tile."""

    model_type = "llava_onevision"

    def _sizes(self, input_size: int) -> tuple[int, int, int, int]:
        side = self._fixed_side(input_size)
        g = side // int(self.config.vision_config.patch_size)
        layers = self._layers()
        self.has_cls = self.config.vision_config.model_type == "clip_vision_model"
        selected = g * g + int(self.has_cls) - int(self.config.vision_feature_select_strategy == "default")
        return side, g, int(self.config.vision_config.hidden_size) * len(layers), selected + 1  # + image_newline

    def _layers(self) -> list[int]:
        layer = self.config.vision_feature_layer
        return [int(layer)] if isinstance(layer, int) else [int(v) for v in layer]

    def preprocess(self, patches: Sequence[np.ndarray]) -> torch.Tensor:
        pixels = super().preprocess(patches)  # (B, tiles, 3, S, S): tile 0 is the base-resolution view
        return pixels[:, 0]

    def encode(self, backbone: "nn.Module", pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inner = backbone.model
        out = inner.vision_tower(pixel_values.to(inner.vision_tower.dtype), output_hidden_states=True,
                                 return_dict=True)
        hidden = torch.cat([out.hidden_states[i] for i in self._layers()], dim=-1)  # (B, g*g [+1], C_v)
        grid = self._to_grid(hidden[:, int(self.has_cls):])
        selected = hidden[:, 1:] if self.config.vision_feature_select_strategy == "default" else hidden
        tokens = inner.multi_modal_projector(selected)  # (B, n, D_text)
        newline = inner.image_newline.to(tokens.dtype).expand(tokens.shape[0], 1, -1)  # (B, 1, D_text)
        return grid, torch.cat([tokens, newline], dim=1)


class Qwen25VLFamily(VisionFamily):
    """Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``): fixed square patch, merged tokens to the LM."""

    model_type = "qwen2_5_vl"

    def _sizes(self, input_size: int) -> tuple[int, int, int, int]:
        vc = self.config.vision_config
        self.patch, self.merge = int(vc.patch_size), int(vc.spatial_merge_size)
        self.temporal = int(vc.temporal_patch_size)
        factor = self.patch * self.merge
        size = self.processor.image_processor.size
        lo, hi = int(size.get("shortest_edge", 0)), int(size.get("longest_edge", 1 << 40))  # pixel counts
        if input_size:
            side = input_size
        else:
            side = QWEN_DEFAULT_MERGED_SIDE * factor
            while side > factor and side * side > hi:
                side -= factor
            while side * side < lo:
                side += factor
        if side % factor or not lo <= side * side <= hi:
            raise ConfigError(f"vsm.input_size: a Qwen2.5-VL patch side must be a multiple of {factor} (patch x merge) "
                             f"with side^2 in the processor's pixel range [{lo}, {hi}], found {side}")
        g = side // self.patch
        return side, g, int(vc.hidden_size), (g // self.merge) ** 2

    def grid_thw(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        """(B, 3) int64 ``image_grid_thw`` of B patches: ``(1, g, g)`` each."""
        g = self.grid_size
        return torch.tensor([[1, g, g]] * batch, dtype=torch.long, device=device)

    def preprocess(self, patches: Sequence[np.ndarray]) -> torch.Tensor:
        out = self.processor.image_processor(images=list(patches), return_tensors="pt")
        expected = self.grid_thw(len(patches))
        if not torch.equal(out["image_grid_thw"].cpu(), expected):
            raise ValueError(f"the image processor resized the {self.input_size} px patches to grids "
                             f"{out['image_grid_thw'].tolist()}, expected {expected[0].tolist()}")
        return self.unflatten(out["pixel_values"], len(patches))

    def unflatten(self, flat: torch.Tensor, batch: int) -> torch.Tensor:
        """The processor's (B*g*g, 3*T*p*p) patch rows (merge-block order, frame repeated T times) -> (B, 3, S, S)."""
        g, m, p, t = self.grid_size, self.merge, self.patch, self.temporal
        x = flat.reshape(batch, g // m, g // m, m, m, 3, t, p, p)[:, :, :, :, :, :, 0]  # one frame of T
        return x.permute(0, 5, 1, 3, 6, 2, 4, 7).reshape(batch, 3, g * p, g * p)  # (B, 3, S, S)

    def flatten(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`unflatten`: (B, 3, S, S) -> (B*g*g, 3*T*p*p), the visual tower's input."""
        b, g, m, p, t = pixel_values.shape[0], self.grid_size, self.merge, self.patch, self.temporal
        x = pixel_values.reshape(b, 3, g // m, m, p, g // m, m, p)
        x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (B, g/m, g/m, m, m, 3, p, p): merge-block order
        x = x.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, t, -1, -1)  # the still frame repeated T times
        return x.reshape(b * g * g, 3 * t * p * p)

    def encode(self, backbone: "nn.Module", pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers.vision_utils import get_vision_window_index

        visual = backbone.model.visual
        b, g, m = pixel_values.shape[0], self.grid_size, self.merge
        grid_thw = self.grid_thw(b, pixel_values.device)
        out = visual(self.flatten(pixel_values).to(visual.dtype), grid_thw=grid_thw)
        projected = out.pooler_output.reshape(b, self.image_tokens, -1)  # (B, N, D_text), merged raster order
        # last_hidden_state is in window order (units of m*m patches): undo it, then merge blocks -> raster
        window_index, _ = get_vision_window_index(grid_thw.cpu(), m, int(self.config.vision_config.window_size),
                                                  self.patch)
        unit = m * m
        hidden = out.last_hidden_state.reshape(-1, unit, out.last_hidden_state.shape[-1])
        hidden = hidden[torch.argsort(window_index).to(hidden.device)]  # (B*g*g/unit, unit, C_v), merge-block order
        c = hidden.shape[-1]
        vision = hidden.reshape(b, g // m, g // m, m, m, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, g, g)
        return vision, projected

    def _position_kwargs(self, backbone: "nn.Module", input_ids: torch.Tensor,
                         attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's own M-RoPE positions: text 1-D, each row's image a (1, g/m, g/m) 3-D block."""
        types = (input_ids == self.image_token_id).int()  # (B, T): 1 on image tokens
        position_ids, _ = backbone.model.get_rope_index(
            input_ids, types, image_grid_thw=self.grid_thw(input_ids.shape[0], input_ids.device),
            attention_mask=attention_mask)
        return {"position_ids": position_ids}  # (3, B, T)


def lora_target_regex(names: Sequence[str]) -> str:
    """``.*language_model\\..*\\.(q_proj|v_proj)`` for ``names`` = (q_proj, v_proj): the decoder's projections
    only (the vision towers, ``vision_tower`` / ``visual``, sit outside ``language_model``)."""
    import re

    return rf".*language_model\..*\.({'|'.join(re.escape(t) for t in names)})"


FAMILIES: dict[str, type[VisionFamily]] = {f.model_type: f for f in (LlavaFamily, OneVisionFamily, Qwen25VLFamily)}
"""``config.json`` ``model_type`` -> its vision adapter."""


def family_for(config: Any, processor: Any, input_size: int = 0) -> VisionFamily:
    """The vision adapter of a backbone's ``config`` (``model_type``) and ``processor``.

    Raises:
        ValueError: a family the VSM does not support.
        ConfigError: ``input_size`` is a patch side the family cannot take.
    """
    cls = FAMILIES.get(str(config.model_type))
    if cls is None:
        raise ValueError(f"the search model supports base models of type {sorted(FAMILIES)}, "
                         f"found {config.model_type!r}")
    return cls(config, processor, input_size)
