"""The vision-token pruning proxy that really removes tokens from the VQA model's input (seed 001, B4).

Each image of a prompt is encoded once (vision tower + projector: ``N`` tokens of width ``D``); a
share ``ratio`` of them is kept (:func:`vwm.budget.prune_token_indices`: every k-th token, ``stride``,
or those with the largest feature norm, ``topk_norm``), the dropped ones leave the sequence
(their ``<image>`` positions are deleted from ``input_ids`` and the attention mask), and the kept
features reach the model through transformers' ``mm_encoder_outputs`` (the model's own scatter into
the image-token positions, with its own count check). So the language model reads, caches and pays
for ``K = max(1, ceil(N * ratio))`` tokens per image: the count the cost ledger books
(:meth:`vwm.budget.VisionBudget.kept_tokens`).

Families: ``llava`` (LLaVA-1.5: one contiguous block of ``N`` tokens per image, 1-D positions). The
any-resolution families pack tiles and newline tokens (OneVision) or position images on a 3-D grid
(Qwen2.5-VL), where removing tokens changes what the positions mean; they are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from seal.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

FAMILIES = ("llava",)
"""``model_type`` of the checkpoints whose vision tokens can be removed."""


@dataclass(frozen=True)
class TokenKeep:
    """Which vision tokens the model keeps (``vision_budget.pruning_mode`` / ``pruning_ratio``)."""

    mode: Literal["stride", "topk_norm"]
    ratio: float

    def __post_init__(self) -> None:
        if self.mode not in ("stride", "topk_norm"):
            raise ConfigError(f"vision_budget.pruning_mode: expected stride or topk_norm, found {self.mode!r}")
        if not 0.0 < self.ratio <= 1.0:
            raise ConfigError(f"vision_budget.pruning_ratio: expected 0 < ratio <= 1, found {self.ratio}")


def check_family(model: Any) -> None:
    """Refuse a model whose vision tokens this proxy cannot remove.

    Raises:
        ConfigError: naming ``vision_budget.pruning_mode`` and the model type.
    """
    model_type = getattr(model.config, "model_type", None)
    if model_type not in FAMILIES:
        raise ConfigError(f"vision_budget.pruning_mode: removing vision tokens works for {', '.join(FAMILIES)} "
                          f"checkpoints; this VQA model is {model_type!r} (set pruning_mode: none)")


def keep_vision_tokens(model: Any, enc: dict, image_token_id: int, keep: TokenKeep) -> dict:
    """The prompt ``enc`` (batch of one, with ``pixel_values``) with only the kept vision tokens.

    Args:
        model: the VQA model (a ``LlavaForConditionalGeneration``).
        enc: ``input_ids`` (1, P) with ``n * N`` image tokens (``n`` images), ``attention_mask``
            (1, P), ``pixel_values`` (n, 3, S, S).
        image_token_id: id of the image tokens in ``input_ids``.
        keep: mode and ratio.

    Returns:
        ``input_ids`` / ``attention_mask`` (1, P - n * (N - K)) on the model's device and
        ``mm_encoder_outputs`` holding the kept features, one (K, D) tensor per image in prompt order
        (their original order kept).
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from vwm.budget import prune_token_indices

    device = model.device
    with torch.no_grad():
        out = model.model.get_image_features(pixel_values=enc["pixel_values"].to(device, model.dtype),
                                             return_dict=True)
    kept = []
    for feats in out.pooler_output:  # n x (N, D)
        chosen = prune_token_indices(feats.float().norm(dim=-1), keep.ratio, keep.mode)  # (K,) ascending
        kept.append(feats[torch.as_tensor(chosen, device=feats.device)])
    ids, mask = resize_image_blocks(enc["input_ids"].to(device), enc["attention_mask"].to(device), image_token_id,
                                    [int(f.shape[0]) for f in kept])
    return {"input_ids": ids, "attention_mask": mask,
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
