"""The search model's token cut: the VSM's language model reads K < N of a patch's image tokens.

A VSM patch is encoded once (:meth:`search.vsm.model.VSMModel.encode_images`): the vision tower's
grid ``vision`` (B, C_v, g, g), which both decoders read, and the projector's ``N`` image tokens
``projected`` (B, N, D_text), which the LM reads in the image-token positions of the prompt. The cut
acts on the second only: each patch keeps ``K`` rows of its projected tokens, the prompt row holds
``K`` image tokens instead of ``N`` (:func:`search.vsm.prompts.encode_prompts` with per-row counts),
and transformers' own ``mm_encoder_outputs`` scatter places them. So the LM really runs on a sequence
``N - K`` tokens shorter, and the ``<LOC>`` state it gives the decoders is the one of that shorter
input; the decoders' grid is untouched (no LM state of an image position is read by any head, so
nothing needs to be scattered back onto the grid).

Modes (``search.token_cut``, :class:`search.vsm.config.TokenCutConfig`), the VQA model's cuts
(:mod:`seal.vqa.token_keep`) applied to a search patch:

- ``stride`` / ``topk_norm``: :func:`vwm.budget.prune_token_indices` keeps ``K = max(1, ceil(N *
  ratio))`` tokens in their original order (every k-th, or the largest feature norms).
- ``entropy``: the seed-003 cascade over the patch's token grid (:func:`vwm.entropy.select_token_grid`
  on the patch's own ``pixel_values``, one smallest patch per token, ``g`` a multiple of 4); a kept
  ``L2`` / ``L3`` patch is one token, the mean of the projected tokens of the cells it covers, at its
  top-left cell's place (:func:`vwm.entropy.token_groups` order). ``K`` varies per patch.

Families: ``llava`` only (one block of ``N`` tokens with 1-D positions; with the ``full`` feature
strategy the CLS token is one more row, which ``entropy`` cannot place on the grid). OneVision's
newline token and Qwen2.5-VL's 3-D positions give the image tokens a layout that removing rows
breaks; :func:`check_cut` refuses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from search.vsm.config import TokenCutConfig
from seal.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from search.vsm.model import VSMModel

FAMILIES = ("llava",)
"""``model_type`` of the search models whose image tokens can be cut."""


def check_cut(model: "VSMModel", cut: TokenCutConfig) -> None:
    """Refuse a cut ``model`` cannot take (nothing to check for ``none``).

    Raises:
        ConfigError: naming ``search.token_cut.mode``: a family other than ``llava``, or ``entropy`` on a
            token grid that is not ``g x g`` with ``g`` a multiple of 4.
    """
    if not cut.active:
        return
    family = model.family
    if family.model_type not in FAMILIES:
        raise ConfigError(f"search.token_cut.mode: cutting the search model's image tokens works for "
                          f"{', '.join(FAMILIES)} search models; this one is {family.model_type!r} (set mode: none)")
    g, n = model.grid_size, model.image_tokens
    if cut.mode == "entropy" and (n != g * g or g % 4):
        raise ConfigError(f"search.token_cut.mode: entropy needs the search model's image tokens on a g x g grid "
                          f"with g a multiple of 4; this model has {n} tokens over a {g} x {g} grid")


def cut_tokens(projected: "torch.Tensor", pixel_values: "torch.Tensor", cut: TokenCutConfig,
               pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> list["torch.Tensor"]:
    """The image tokens the LM reads for each of B patches.

    Args:
        projected: (B, N, D_text) the projector's tokens, raster order of the ``g x g`` grid.
        pixel_values: (B, 3, S, S) the patches' normalised pixels (``entropy`` reads them).
        cut: the cut (``none``: every row).
        pixel_mean, pixel_std: the image processor's normalisation (to read pixels back as 0..255).

    Returns:
        B tensors (K_i, D_text), the kept rows in their original order (``entropy``: one per kept
        patch of the cascade); ``K_i = N`` for ``none``.
    """
    import torch

    from vwm.budget import prune_token_indices

    if not cut.active:
        return list(projected)
    if cut.mode in ("stride", "topk_norm"):
        out = []
        for feats in projected:  # B x (N, D)
            chosen = prune_token_indices(feats.float().norm(dim=-1), cut.ratio, cut.mode)  # (K,) ascending
            out.append(feats[torch.as_tensor(chosen, device=feats.device)])
        return out
    from vwm.entropy import merge_token_groups, select_token_grid

    entropy = cut.entropy_config()
    pixels = pixel_values.detach().float().cpu().numpy()  # (B, 3, S, S)
    return [merge_token_groups(feats, select_token_grid(image, int(feats.shape[0]), entropy, pixel_mean, pixel_std))
            for feats, image in zip(projected, pixels)]
