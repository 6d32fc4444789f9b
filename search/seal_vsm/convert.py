"""``seal convert seal-vsm SRC DST``: the published SEAL VSM -> a converted directory (:mod:`search.seal_vsm.model`).

The original (``craigwu/seal_vsm_7b``, ``VisualSearch/model/VSM.py``; ``config.json`` ``model_type:
llava`` with ``out_dim``) saved every module but the CLIP tower (its merge script drops
``vision_tower``): pass ``--vision-tower DIR``, a local copy of ``openai/clip-vit-large-patch14``,
unless the checkpoint holds one. Key mapping (original -> ours):

| original | ours |
|---|---|
| LM, ``model.mm_projector`` (+ tower) | ``llava/`` (:mod:`seal.models.seal_llava`) |
| ``model.owlvit.vision_model.*`` | ``owlvit/`` ``OwlViTVisionModel`` ``vision_model.*`` |
| ``model.owlvit.{class_head,box_head,layer_norm}.*`` | ``heads.safetensors`` same names |
| ``model.visual_projection`` / ``prompt_encoder`` / ``mask_decoder`` | same names |
| ``model.text_hidden_fcs_det.0.{0,2}`` / ``_seg`` | ``loc_to_det.{0,2}`` / ``loc_to_seg`` |

Sizes are read from ``config.json`` and the tensors' shapes (OWL-ViT and SAM head counts follow
their architectures: head width 64 and 32); every tensor is checked against the module it fills.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from seal.core.errors import InputError
from seal.models.seal_checkpoint import OriginalCheckpoint, read_original_checkpoint
from seal.models.seal_convert_vqa import ConvertReport
from seal.models.seal_llava import (LLAVA_V1_SYSTEM, build_llava, build_processor, load_tokenizer_for,
                                    prepare_out_dir, save_llava_dir, torch_dtype, vicuna_v1_template)
from search.seal_vsm.heads import SealVSMHeads, SealVSMHeadsConfig
from search.seal_vsm.model import BACKEND, CONFIG, HEADS, LLAVA_DIR, OWL_DIR, SealVSMConfig

SOURCE_FORMAT = "seal_vsm_7b"
OWL = "model.owlvit."
SEARCH_DEFAULTS = {
    "confidence_high": 0.5, "confidence_low": 0.3, "leaf_divisor": 4, "min_leaf_side": 224, "overlap": 0.0,
    "priority_scorer": "ancestor_decay", "level_weight_base": 4.0, "detection_priority_weight": 0.0,
    "cue_threshold_base": 6.0, "cue_threshold_decay": 0.7, "cue_threshold_floor": 3.0,
}
"""The reference's search settings (``visual_search.py``), which the VSM's scores were tuned for."""


def owl_config(ckpt: OriginalCheckpoint):  # noqa: ANN201 (transformers config)
    """``OwlViTVisionConfig`` inferred from the ``model.owlvit.vision_model`` tensors."""
    from transformers import OwlViTVisionConfig

    pre = OWL + "vision_model."
    patch = ckpt.take(pre + "embeddings.patch_embedding.weight")
    hidden, p = int(patch.shape[0]), int(patch.shape[-1])
    positions = int(ckpt.take(pre + "embeddings.position_embedding.weight").shape[0])
    return OwlViTVisionConfig(
        hidden_size=hidden, intermediate_size=int(ckpt.take(pre + "encoder.layers.0.mlp.fc1.weight").shape[0]),
        num_hidden_layers=ckpt.count_indexed(pre + "encoder.layers.", ".layer_norm1.weight"),
        num_attention_heads=max(1, hidden // 64), image_size=round((positions - 1) ** 0.5) * p, patch_size=p,
        hidden_act="quick_gelu", layer_norm_eps=1e-5)


def heads_config(ckpt: OriginalCheckpoint) -> SealVSMHeadsConfig:
    """Head sizes from ``config.json`` (``hidden_size``, ``out_dim``) and the SAM tensors' shapes."""
    md = "model.mask_decoder."
    sam_dim = int(ckpt.take(md + "iou_token.weight").shape[1])
    return SealVSMHeadsConfig(
        lm_hidden=ckpt.cfg("hidden_size"), det_dim=ckpt.cfg("out_dim"), sam_dim=sam_dim,
        sam_depth=ckpt.count_indexed(md + "transformer.layers.", ".norm1.weight"),
        sam_mlp_dim=int(ckpt.take(md + "transformer.layers.0.mlp.lin1.weight").shape[0]),
        sam_heads=max(1, sam_dim // 32),
        iou_hidden=int(ckpt.take(md + "iou_prediction_head.layers.0.weight").shape[0]),
        mask_in_chans=int(ckpt.take("model.prompt_encoder.mask_downscaling.3.weight").shape[0]))


def heads_state(ckpt: OriginalCheckpoint, heads: SealVSMHeads) -> dict[str, torch.Tensor]:
    """Every head tensor under our names, each checked against the module it fills."""
    def source(key: str) -> str:
        for ours, theirs in (("loc_to_det.", "model.text_hidden_fcs_det.0."),
                             ("loc_to_seg.", "model.text_hidden_fcs_seg.0."), ("class_head.", OWL + "class_head."),
                             ("box_head.", OWL + "box_head."), ("layer_norm.", OWL + "layer_norm.")):
            if key.startswith(ours):
                return theirs + key[len(ours):]
        return "model." + key

    return {k: ckpt.take(source(k), tuple(v.shape)) for k, v in heads.state_dict().items()}


def convert_seal_vsm(src: str | Path, dst: str | Path, dtype: str = "auto", vision_tower: str | Path | None = None,
                     tokenizer: str | Path | None = None, overwrite: bool = False) -> ConvertReport:
    """Convert an original SEAL VSM directory ``src`` into ``dst`` (see the module docstring).

    Raises:
        InputError: unreadable / incomplete source (one line naming the file), no CLIP tower and no
            ``vision_tower``, a non-empty ``dst``.
    """
    from safetensors.torch import save_file
    from transformers import OwlViTVisionModel

    from seal.core.manifest import write_manifest
    from seal.core.runs import command_line, git_revision

    src, out = Path(src), Path(dst)
    ckpt = read_original_checkpoint(src)
    if ckpt.config.get("model_type") != "llava" or "out_dim" not in ckpt.config:
        raise InputError(f"expected a SEAL VSM checkpoint (model_type 'llava' with out_dim), found model_type "
                         f"{ckpt.config.get('model_type')!r}", src / "config.json")
    prepare_out_dir(out, overwrite)
    dt = torch_dtype(dtype, ckpt)
    cfg = SealVSMConfig(heads=heads_config(ckpt))
    if not ckpt.config.get("mm_use_im_start_end", True):
        cfg.image_text = "<image>\n"
    tok = load_tokenizer_for(ckpt, tokenizer, vicuna_v1_template(LLAVA_V1_SYSTEM, cfg.image_text))
    if cfg.loc_token not in tok.get_vocab():
        raise InputError(f"the tokenizer has no {cfg.loc_token} token; is this the VSM's tokenizer?",
                         Path(tokenizer or src))
    llava = build_llava(ckpt, tok, vision_tower, dt)
    ocfg = owl_config(ckpt)
    owl = OwlViTVisionModel(ocfg)
    owl_state = ckpt.with_prefix(OWL + "vision_model.")
    expected = owl.state_dict()
    for k, v in expected.items():
        ckpt.take(OWL + "vision_model." + k.removeprefix("vision_model."), tuple(v.shape))
    owl.load_state_dict({"vision_model." + k: v.to(dt) for k, v in owl_state.items()}, strict=True)
    heads = SealVSMHeads(cfg.heads, ocfg)
    heads.load_state_dict(heads_state(ckpt, heads), strict=True)
    ckpt.check_all_used()

    save_llava_dir(llava, build_processor(llava, tok), out / LLAVA_DIR, src)
    owl.to(dt).save_pretrained(str(out / OWL_DIR))
    save_file({k: v.to(dt).contiguous() for k, v in heads.state_dict().items()}, str(out / HEADS))
    (out / CONFIG).write_text(json.dumps(asdict(cfg), indent=2) + "\n", encoding="utf-8")
    files = [str(p.relative_to(out)) for p in sorted(out.rglob("*")) if p.is_file()]
    config = {"backend": BACKEND, "converted_from": str(src), "source_format": SOURCE_FORMAT,
              "dtype": str(dt).removeprefix("torch."), "heads": asdict(cfg.heads)}
    write_manifest(out, "vsm", config, files, search_defaults=dict(SEARCH_DEFAULTS),
                   recipe={"command": command_line(), "git_revision": git_revision(),
                           "converted_from": str(src), "format": SOURCE_FORMAT})
    n_extra = sum(p.numel() for p in owl.parameters()) + sum(p.numel() for p in heads.parameters())
    return ConvertReport(str(src), str(out), "vsm", sum(p.numel() for p in llava.parameters()), n_extra,
                         config["dtype"])

