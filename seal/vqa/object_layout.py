"""The SEAL VQA LLM's token layout of the visual working memory (a converted ``seal_vqa_7b``).

A checkpoint written by ``seal convert seal-vqa`` records ``vwm_layout: seal_objects`` in its manifest
and carries the SEAL object projector (:mod:`seal.models.seal_objects`). Each image of a VWM prompt
(the global view first, then the crops, in prompt order) then reaches the language model through one
of the two SEAL projectors, as the reference lays it out (``shared/reference/vstar-seal.md`` §1.2):

=================  ====================  ==========================
crops in the VWM   global view           each crop
=================  ====================  ==========================
0                  long (the projector)  -
1 or 2             short (32 tokens)     long (one token per patch)
3 or more          short (32 tokens)     short (32 tokens)
=================  ====================  ==========================

*long*: the llava-hf ``multi_modal_projector`` (the original ``mm_projector``), N tokens; *short*: the
object projector (Perceiver resampler), 32 tokens. The prompt's text is the project's own VWM layout
(the crops and their ``name at [x1, y1, x2, y2]`` lines, :mod:`vwm.layout`); the features reach the
model through transformers' ``mm_encoder_outputs`` with each image's block of image tokens resized to
its path's count, so the ledger's count is the tokens in the input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from seal.models.seal_objects import ObjectProjector


def image_paths(n_images: int) -> list[str]:
    """``"long"`` / ``"short"`` for each of ``n_images`` (the global view, then the crops)."""
    crops = n_images - 1
    if crops <= 0:
        return ["long"] * max(n_images, 0)
    return ["short"] + ["long" if crops <= 2 else "short"] * crops


def seal_object_prompt(model: Any, projector: "ObjectProjector", enc: dict, image_token_id: int) -> dict:
    """The prompt ``enc`` (batch of one, with ``pixel_values`` (n, 3, S, S)) in the SEAL layout.

    Returns:
        ``input_ids`` / ``attention_mask`` (1, P') on the model's device, each image's block of image
        tokens N (long) or ``projector.cfg.num_latents`` (short) long, and ``mm_encoder_outputs``
        holding one (N or 32, D) tensor per image in prompt order.
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from seal.models.seal_objects import vision_features
    from seal.vqa.token_keep import resize_image_blocks

    device = model.device
    pixels = enc["pixel_values"].to(device, model.dtype)
    paths = image_paths(int(pixels.shape[0]))
    with torch.no_grad():
        feats = vision_features(model, pixels)  # (n, P, C): the tower runs once for both projectors
        long = model.model.multi_modal_projector(feats) if "long" in paths else None  # (n, P, D)
        param = next(projector.parameters())
        short = projector(feats.to(param.dtype)) if "short" in paths else None  # (n, 32, D)
    features = [long[i] if path == "long" else short[i].to(model.dtype) for i, path in enumerate(paths)]
    ids, mask = resize_image_blocks(enc["input_ids"].to(device), enc["attention_mask"].to(device), image_token_id,
                                    [int(f.shape[0]) for f in features])
    return {"input_ids": ids, "attention_mask": mask,
            "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=features)}}
