"""The vision-token pruning proxy that really removes tokens from the VQA model's input (seed 001, B4).

Each image of a prompt is encoded once (vision tower + projector: ``N`` tokens of width ``D``); a
share ``ratio`` of them is kept (:func:`vwm.budget.prune_token_indices`: every k-th token, ``stride``,
or those with the largest feature norm, ``topk_norm``), the dropped ones leave the sequence
(their ``<image>`` positions are deleted from ``input_ids`` and the attention mask), and the kept
features reach the model through transformers' ``mm_encoder_outputs`` (the model's own scatter into
the image-token positions, with its own count check). So the language model reads, caches and pays
for ``K = max(1, ceil(N * ratio))`` tokens per image: the count the cost ledger books
(:meth:`vwm.budget.VisionBudget.kept_tokens`).

The ``entropy`` mode (seed 003, :mod:`vwm.entropy`) keeps patches of three sizes instead: the
prompt's own ``pixel_values`` are turned back into 0..255 grey levels (``pixel_mean`` / ``pixel_std``,
the processor's normalisation), one smallest patch is one cell of the tower's output grid (``S / g``
px for ``g x g`` tokens), and the cascade keeps each cell as its own token or covers it with a 2 x 2
(``L2``) or 4 x 4 (``L3``) patch. A coarse patch becomes ONE token: the mean of the projected
features of the cells it covers, placed at its top-left cell's place in the grid's raster order
(:func:`vwm.entropy.token_groups`). So ``K`` = the selection's ``kept_tokens`` per image
(:func:`entropy_selections` gives the per-image :class:`vwm.entropy.BudgetStats`), and the grid side
``g`` must be a multiple of 4 (8 x 8 for the shipped tiny model, 24 x 24 for LLaVA-1.5-336).

Families (:func:`check_family`): ``llava`` (LLaVA-1.5: one contiguous block of ``N`` tokens per image,
1-D positions) takes every mode. Qwen2.5-VL (``qwen2_5_vl``) takes the ``entropy`` mode, where the
selection drives the patch sizes (:func:`keep_mrope_vision_tokens`, reached through
:func:`keep_vision_tokens`): the cascade runs over each image's merged-token grid (one smallest patch =
one token after the 2 x 2 merger, 28 px in the real model; :func:`vwm.entropy.select_merged_grid`), a
1 x 1, 2 x 2 or 4 x 4 patch is one token, and the prompt carries explicit M-RoPE ``position_ids``: text
keeps its own positions, a kept token takes the (t, h, w) position of its top-left cell. Every later
token continues from those positions (rope delta ``max(position) + 1 - P'``,
:func:`seal.models.vlm.rope_delta`), in generation, option scoring and letters alike; the stride /
top-k proxies are refused for it (its positions would lose their grid). LLaVA-OneVision packs tiles and
row-newline tokens, where removing tokens changes what the rest means: every mode is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from seal.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from vwm.entropy import EntropyConfig, PatchSelection

MODES = ("stride", "topk_norm", "entropy", "merger", "pruners", "merger+pruners")
"""How the kept tokens are chosen."""
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""CLIP's pixel normalisation (``transformers.image_utils.OPENAI_CLIP_MEAN`` / ``_STD``), LLaVA's default."""

FAMILIES = ("llava",)
"""``model_type`` of the checkpoints whose vision tokens every mode can remove."""
ENTROPY_FAMILIES = ("llava", "qwen2_5_vl")
"""``model_type`` of the checkpoints the ``entropy`` mode works for (Qwen2.5-VL: :func:`keep_mrope_vision_tokens`)."""


@dataclass(frozen=True)
class TokenKeep:
    """Which vision tokens the model keeps (``vision_budget.pruning_mode`` / ``pruning_ratio``)."""

    mode: Literal["stride", "topk_norm", "entropy", "merger", "pruners", "merger+pruners"]
    ratio: float = 1.0
    """Share kept by ``stride`` / ``topk_norm``, merged into by ``merger`` (``M = ceil(N * ratio)``), or
    kept by the ``pruners`` from their layer on (``merger+pruners``: the merger's, the pruners then keep
    their trained share); unused by ``entropy``, whose ``alpha`` sets it."""
    merger_path: str | None = None
    """``merger``: the trained token merger's folder (:mod:`seal.vqa.merger`, ``seal train merger``)."""
    pruners_path: str | None = None
    """``pruners``: the trained layer pruners' folder (:mod:`seal.vqa.pruners`, ``seal train pruners``)."""
    entropy: "EntropyConfig | None" = None
    """The patch selection of the ``entropy`` mode (required there)."""
    pixel_mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    """``entropy``: the processor's ``image_mean`` (to read ``pixel_values`` back as 0..255 levels)."""
    pixel_std: tuple[float, float, float] = OPENAI_CLIP_STD
    """``entropy``: the processor's ``image_std``."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"vision_budget.pruning_mode: expected one of {', '.join(MODES)}, found {self.mode!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"vision_budget.pruning_ratio: expected 0 < ratio <= 1, found {self.ratio}")
        if "pruners" in self.mode and not self.pruners_path:
            raise ConfigError("vision_budget.pruners_path: the pruners mode needs trained layer pruners' folder")
        if "merger" in self.mode and not self.merger_path:
            raise ConfigError("vision_budget.merger_path: the merger mode needs a trained merger's folder")
        if self.mode == "entropy" and self.entropy is None:
            raise ConfigError("vision_budget.entropy: the entropy mode needs its settings (mode, alpha, ...)")


def check_family(model: Any, mode: str | None = None) -> None:
    """Refuse a model whose vision tokens the cut ``mode`` cannot remove (None: a cut of any mode).

    Raises:
        ConfigError: naming ``vision_budget.pruning_mode`` and the model type.
    """
    model_type = getattr(model.config, "model_type", None)
    families = ENTROPY_FAMILIES if mode == "entropy" else FAMILIES
    if model_type in families:
        return
    what = "entropy removes vision tokens of" if mode == "entropy" else "removing vision tokens works for"
    fix = "it takes pruning_mode: entropy only, or none" if model_type == "qwen2_5_vl" else "set pruning_mode: none"
    raise ConfigError(f"vision_budget.pruning_mode: {what} {' and '.join(families)} checkpoints; this VQA model "
                      f"is {model_type!r} ({fix})")


def keep_vision_tokens(model: Any, enc: dict, image_token_id: int, keep: TokenKeep) -> dict:
    """The prompt ``enc`` (batch of one, with ``pixel_values``) with only the kept vision tokens.

    Args:
        model: the VQA model (a ``LlavaForConditionalGeneration``; a ``Qwen2_5_VLForConditionalGeneration``
            takes the ``entropy`` mode only, through :func:`keep_mrope_vision_tokens`).
        enc: ``input_ids`` (1, P) with ``n * N`` image tokens (``n`` images), ``attention_mask``
            (1, P), ``pixel_values`` (n, 3, S, S).
        image_token_id: id of the image tokens in ``input_ids``.
        keep: mode and ratio.

    Returns:
        ``input_ids`` / ``attention_mask`` (1, P - n * (N - K)) on the model's device and
        ``mm_encoder_outputs`` holding the kept features, one (K, D) tensor per image in prompt order
        (their original order kept); for Qwen2.5-VL also the explicit ``position_ids`` (3, 1, P').

    Raises:
        ConfigError: a Qwen2.5-VL model with another mode than ``entropy``, or a grid the cascade cannot cover.
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from vwm.budget import prune_token_indices
    from vwm.entropy import merge_token_groups

    if keep.mode not in ("stride", "topk_norm", "entropy"):
        raise ValueError(f"keep_vision_tokens: the {keep.mode} mode has its own forward (seal.vqa.merged_forward, "
                         "seal.vqa.pruned_forward)")
    if getattr(model.config, "model_type", None) == "qwen2_5_vl":  # 3-D positions: its own cut
        check_family(model, keep.mode)
        return keep_mrope_vision_tokens(model, enc, image_token_id, keep)
    device = model.device
    with torch.no_grad():
        out = model.model.get_image_features(pixel_values=enc["pixel_values"].to(device, model.dtype),
                                             return_dict=True)
    if keep.mode == "entropy":  # one token per kept patch of the cascade
        selections = entropy_selections(enc["pixel_values"], [int(f.shape[0]) for f in out.pooler_output], keep)
        kept = [merge_token_groups(feats, sel) for feats, sel in zip(out.pooler_output, selections)]
    else:
        kept = []
        for feats in out.pooler_output:  # n x (N, D)
            chosen = prune_token_indices(feats.float().norm(dim=-1), keep.ratio, keep.mode)  # (K,) ascending
            kept.append(feats[torch.as_tensor(chosen, device=feats.device)])
    ids, mask = resize_image_blocks(enc["input_ids"].to(device), enc["attention_mask"].to(device), image_token_id,
                                    [int(f.shape[0]) for f in kept])
    return {"input_ids": ids, "attention_mask": mask,
            "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=kept)}}


def entropy_selections(pixel_values: "torch.Tensor", n_tokens: list[int], keep: TokenKeep) -> list["PatchSelection"]:
    """The ``entropy`` mode's patch selection of each image of a prompt.

    Args:
        pixel_values: (n, 3, S, S) the processor's normalised pixels.
        n_tokens: the tower's output tokens per image (``N = g * g``, a square grid, ``g`` a multiple of 4
            dividing ``S``).
        keep: an ``entropy`` :class:`TokenKeep`.

    Returns:
        one :class:`vwm.entropy.PatchSelection` per image over its ``g x g`` grid (``stats.kept_tokens``
        = the tokens the model reads for it).

    Raises:
        ConfigError: a token grid the cascade cannot cover (not square, or ``g`` not a multiple of 4).
    """
    from vwm.entropy import select_token_grid

    pixels = pixel_values.detach().float().cpu().numpy()  # (n, 3, S, S)
    return [select_token_grid(image, n, keep.entropy, keep.pixel_mean, keep.pixel_std)  # type: ignore[arg-type]
            for image, n in zip(pixels, n_tokens)]


def keep_mrope_vision_tokens(model: Any, enc: dict, image_token_id: int, keep: TokenKeep) -> dict:
    """The entropy mode for Qwen2.5-VL (M-RoPE): the prompt ``enc`` (batch of one) with one token per
    kept patch of each image's merged-token grid, placed by explicit 3-D positions.

    Args:
        model: a ``Qwen2_5_VLForConditionalGeneration``.
        enc: the processor's ``input_ids`` / ``attention_mask`` (1, P), ``pixel_values`` (sum of
            ``t * h * w`` patches, ``3 * T * p * p``), ``image_grid_thw`` (n, 3); each image's merged grid
            ``(h / m, w / m)`` must have sides that are multiples of 4 (a view of multiples of ``4 * m * p``
            px: 112 px for the real model).
        image_token_id: id of ``<|image_pad|>``.
        keep: an ``entropy`` :class:`TokenKeep`.

    Returns:
        ``input_ids`` / ``attention_mask`` (1, P'), ``position_ids`` (3, 1, P'): the model's own M-RoPE
        positions of the tokens kept (text unchanged, a coarse token at its top-left cell's (t, h, w)), and
        ``mm_encoder_outputs`` with one (K_i, D) tensor per image (mean of the merged tokens each patch
        covers); ``P' = P - sum(N_i - K_i)``.
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from vwm.entropy import merge_token_groups, select_merged_grid, token_groups

    device = model.device
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    thw = enc["image_grid_thw"].to(device)
    types = enc.get("mm_token_type_ids")
    types = (ids == image_token_id).int() if types is None else types.to(device)
    vision = model.config.vision_config
    m, p, temporal = int(vision.spatial_merge_size), int(vision.patch_size), int(vision.temporal_patch_size)
    pixels = enc["pixel_values"].detach().float().cpu().numpy()  # (sum t * h * w, 3 * T * p * p)
    selections, start = [], 0
    for grid in enc["image_grid_thw"].tolist():  # select first: an impossible grid fails before any forward
        selections.append(select_merged_grid(pixels[start:], grid, keep.entropy, keep.pixel_mean,  # type: ignore[arg-type]
                                             keep.pixel_std, p, m, temporal))
        start += grid[0] * grid[1] * grid[2]
    with torch.no_grad():
        out = model.model.get_image_features(pixel_values=enc["pixel_values"].to(device, model.dtype),
                                             image_grid_thw=thw, return_dict=True)
        positions, _ = model.model.get_rope_index(ids, types, image_grid_thw=thw, attention_mask=mask)  # (3, 1, P)
    image_rows = torch.nonzero(ids[0] == image_token_id).flatten().tolist()
    keep_rows = set(torch.nonzero(ids[0] != image_token_id).flatten().tolist())
    kept, cursor = [], 0
    for (t, h, w), feats, selection in zip(enc["image_grid_thw"].tolist(), out.pooler_output, selections):
        kept.append(merge_token_groups(feats, selection))
        keep_rows.update(image_rows[cursor + int(g.min())] for g in token_groups(selection))  # top-left cell's row
        cursor += t * (h // m) * (w // m)
    index = torch.as_tensor(sorted(keep_rows), device=device, dtype=torch.long)
    return {"input_ids": ids[:, index], "attention_mask": mask[:, index], "position_ids": positions[:, :, index],
            "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=kept)}}


def resize_image_blocks(ids: "torch.Tensor", mask: "torch.Tensor", image_token_id: int,
                        sizes: list[int]) -> tuple["torch.Tensor", "torch.Tensor"]:
    """``(input_ids, attention_mask)`` (1, P') with image ``i``'s block of image tokens resized to
    ``sizes[i]`` tokens (a block is the run of image tokens the processor expanded one ``<image>`` into;
    every image token has the same id, so only the count matters). ``ids`` / ``mask``: (1, P).

    Raises:
        ValueError: the prompt holds another number of image blocks than ``sizes``.
    """
    import torch

    row, m = ids[0], mask[0]
    is_image = row == image_token_id
    edge = is_image.new_zeros(1)
    starts = torch.nonzero(is_image & ~torch.cat([edge, is_image[:-1]])).flatten().tolist()
    ends = (torch.nonzero(is_image & ~torch.cat([is_image[1:], edge])).flatten() + 1).tolist()
    if len(starts) != len(sizes):
        raise ValueError(f"the prompt holds {len(starts)} image blocks, expected {len(sizes)}")
    pieces_ids, pieces_mask, cursor = [], [], 0
    for start, end, size in zip(starts, ends, sizes):
        pieces_ids += [row[cursor:start], row.new_full((size,), image_token_id)]
        pieces_mask += [m[cursor:start], m.new_ones(size)]
        cursor = end
    pieces_ids.append(row[cursor:])
    pieces_mask.append(m[cursor:])
    return torch.cat(pieces_ids)[None], torch.cat(pieces_mask)[None]


def to_device(enc: dict, device: "torch.device | str") -> dict:
    """``enc`` with every tensor on ``device`` (pre-encoded features in ``mm_encoder_outputs`` are
    already on the model's device and stay as they are)."""
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in enc.items()}
