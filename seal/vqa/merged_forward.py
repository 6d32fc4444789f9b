"""The forward glue of the token merger: vision tower -> :class:`seal.vqa.merger.TokenMerger` ->
projector -> the language model, with each image's block of image tokens shrunk to ``M``.

For LLaVA (``model_type`` ``llava``, :func:`seal.vqa.token_keep.check_family`):

1. :func:`tower_features`: the tower's hidden states at the layer(s) the model's own config names
   (``vision_feature_layer``, an index or a list whose layers are concatenated on the width), the CLS
   token dropped when ``vision_feature_select_strategy`` is ``default``: ``(n, N, D_v)``, exactly what
   the model's ``get_image_features`` hands its projector;
2. the merger: ``(n, M, D_v)``;
3. ``model.model.multi_modal_projector``: ``(n, M, D_t)``;
4. the prompt's image blocks resized to ``M`` tokens each (:func:`seal.vqa.token_keep.resize_image_blocks`)
   and the projected tokens passed through transformers' ``mm_encoder_outputs``, so the model's own
   scatter (and its count check) places them; the language model reads ``M`` tokens per image.

:func:`merged_prompt` does this for one prompt without gradients (scoring, answering);
:func:`merged_batch` for a padded training batch, with gradients into the merger (the tower runs
without gradients: it is frozen).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from seal.vqa.token_keep import check_family, resize_image_blocks

if TYPE_CHECKING:
    from seal.vqa.merger import MergeOutput, TokenMerger

IGNORE_INDEX = -100


def tower_features(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """The tower features the projector reads, before it: ``(n, N, D_v)`` for ``pixel_values``
    ``(n, 3, S, S)`` (``D_v`` = tower width x the number of selected layers), in the model's dtype."""
    cfg = model.config
    layer = cfg.vision_feature_layer
    out = model.model.vision_tower(pixel_values.to(model.device, model.dtype), output_hidden_states=True,
                                   return_dict=True)
    layers = [layer] if isinstance(layer, int) else list(layer)
    chosen = [out.hidden_states[i] for i in layers]  # each (n, 1 + N, D)
    if cfg.vision_feature_select_strategy == "default":
        chosen = [h[:, 1:] for h in chosen]  # drop CLS
    return torch.cat(chosen, dim=-1)  # (n, N, D_v)


def question_embeddings(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token_id: int,
                        labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The question's text embeddings of each prompt, for the question-aware merger.

    The question is every real, non-image token of the prompt (template, layout text and question);
    with ``labels`` (training), the reply's tokens (labels not -100) are left out, so the merger never
    reads the answer.

    Args:
        input_ids, attention_mask: (B, L); labels: (B, L) or None.

    Returns:
        ``(text, mask)``: (B, T, D_t) the model's input embeddings of those tokens, left-aligned and
        zero-padded to the longest, and (B, T) bool, True on real tokens.
    """
    keep = attention_mask.bool() & (input_ids != image_token_id)  # (B, L)
    if labels is not None:
        keep &= labels == IGNORE_INDEX
    embeds = model.get_input_embeddings()(input_ids)  # (B, L, D_t)
    counts = keep.sum(dim=1)
    t = max(1, int(counts.max()))
    text = embeds.new_zeros(input_ids.shape[0], t, embeds.shape[-1])
    mask = torch.zeros(input_ids.shape[0], t, dtype=torch.bool, device=input_ids.device)
    for row in range(input_ids.shape[0]):
        k = int(counts[row])
        text[row, :k] = embeds[row, keep[row]]
        mask[row, :k] = True
    return text, mask


def merge_images(model: Any, merger: "TokenMerger", pixel_values: torch.Tensor, tokens: int | None = None,
                 text: torch.Tensor | None = None,
                 text_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, "MergeOutput"]:
    """Tower (no gradient) -> merger -> projector for ``n`` images.

    Args:
        pixel_values: (n, 3, S, S); tokens: ``M``; text / text_mask: (n, T, D_t) / (n, T), one row per
            image (question_aware merger only).

    Returns:
        ``(projected, out)``: (n, M, D_t) in the model's dtype, and the merger's output.
    """
    with torch.no_grad():
        feats = tower_features(model, pixel_values)  # (n, N, D_v)
    out = merger(feats, tokens, text, text_mask)
    projected = model.model.multi_modal_projector(out.merged.to(model.dtype))  # (n, M, D_t)
    return projected, out


def _encoder_outputs(projected: torch.Tensor) -> dict:
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    return {"image": BaseModelOutputWithPooling(pooler_output=list(projected))}  # n x (M, D_t)


def merged_prompt(model: Any, merger: "TokenMerger", enc: dict, image_token_id: int,
                  tokens: int | None = None) -> dict:
    """The prompt ``enc`` (batch of one, with ``pixel_values``) with each image merged to ``M`` tokens.

    Args:
        enc: ``input_ids`` / ``attention_mask`` (1, P) with ``n * N`` image tokens, ``pixel_values``
            (n, 3, S, S).

    Returns:
        ``input_ids`` / ``attention_mask`` (1, P - n * (N - M)) on the model's device and
        ``mm_encoder_outputs`` holding the merged tokens, one (M, D_t) tensor per image in prompt order
        (pass it to the model, or to :func:`seal.vqa.scoring.reply_token_logprobs`, as it is).
    """
    check_family(model)
    device = model.device
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    n_images = int(enc["pixel_values"].shape[0])
    text = text_mask = None
    with torch.no_grad():
        if merger.cfg.variant == "question_aware":
            text, text_mask = question_embeddings(model, ids, mask, image_token_id)
            text, text_mask = text.expand(n_images, -1, -1), text_mask.expand(n_images, -1)
        projected, _ = merge_images(model, merger, enc["pixel_values"], tokens, text, text_mask)
    ids, mask = resize_image_blocks(ids, mask, image_token_id, [int(projected.shape[1])] * n_images)
    return {"input_ids": ids, "attention_mask": mask, "mm_encoder_outputs": _encoder_outputs(projected)}


def merged_batch(model: Any, merger: "TokenMerger", batch: dict, image_token_id: int,
                 tokens: int | None = None) -> tuple[dict, "MergeOutput"]:
    """A right-padded training batch with every image merged to ``M`` tokens (gradients reach the merger).

    Args:
        batch: :func:`seal.vqa.examples.collate` output: ``input_ids`` / ``attention_mask`` / ``labels``
            (B, L), ``pixel_values`` (n, 3, S, S) in row order (every row holds >= 1 image).

    Returns:
        ``(inputs, out)``: ``input_ids`` / ``attention_mask`` / ``labels`` (B, L') re-padded (labels
        -100 on the image tokens, the text tokens' labels unchanged and in order) and
        ``mm_encoder_outputs`` for the model's forward; the merger's output over the n images.
    """
    from seal.vqa.examples import collate

    check_family(model)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    lengths = mask.sum(dim=1).tolist()  # right-padded rows
    n_tokens = int((ids == image_token_id).sum())
    n_images = int(batch["pixel_values"].shape[0])
    if n_images == 0 or n_tokens % n_images:
        raise ValueError(f"the batch holds {n_tokens} image tokens for {n_images} images")
    per_image = n_tokens // n_images
    images_per_row = [int((ids[r] == image_token_id).sum()) // per_image for r in range(ids.shape[0])]
    text = text_mask = None
    if merger.cfg.variant == "question_aware":
        text, text_mask = question_embeddings(model, ids, mask, image_token_id, labels)
        rows = torch.repeat_interleave(torch.arange(ids.shape[0], device=ids.device),
                                       torch.tensor(images_per_row, device=ids.device))  # (n,)
        text, text_mask = text[rows], text_mask[rows]
    projected, out = merge_images(model, merger, batch["pixel_values"], tokens, text, text_mask)
    m = int(projected.shape[1])
    examples = []
    for r, length in enumerate(lengths):
        row_ids, row_mask = resize_image_blocks(ids[r:r + 1, :length], mask[r:r + 1, :length], image_token_id,
                                                [m] * images_per_row[r])
        row_labels = torch.full_like(row_ids[0], IGNORE_INDEX)
        row_labels[row_ids[0] != image_token_id] = labels[r, :length][ids[r, :length] != image_token_id]
        examples.append({"input_ids": row_ids[0], "attention_mask": row_mask[0], "labels": row_labels})
    inputs = collate(examples, int(getattr(model.config, "pad_token_id", None) or 0))  # padding is masked
    inputs = {k: v.to(ids.device) for k, v in inputs.items()}
    inputs["mm_encoder_outputs"] = _encoder_outputs(projected)
    return inputs, out
