"""``seal convert seal-vqa SRC DST``: the published SEAL VQA LLM -> a seal ``vqa`` checkpoint.

Reads an original ``craigwu/seal_vqa_7b`` directory (``config.json`` with ``model_type:
llava_search``; sharded ``.bin`` or safetensors; see :mod:`seal.models.seal_checkpoint`) and writes:

- a llava-hf ``LlavaForConditionalGeneration`` (LM, CLIP tower, ``mm_projector``; see
  :mod:`seal.models.seal_llava`) with its processor and the Vicuna v1 chat template;
- ``object_projector.safetensors`` + ``object_projector.json``: the ``mm_projector_object``
  resampler as :class:`seal.models.seal_objects.ObjectProjector`;
- ``manifest.json``, kind ``vqa``, ``config``: ``converted_from`` (SRC), ``source_format``
  (``seal_vqa_7b``), ``vwm_layout`` (``seal_objects``: every VWM crop is 32 object tokens),
  ``object_tokens`` and ``image_tokens``.

Original object-projector keys (``model.mm_projector_object.``) -> ours::

    0.{weight,bias}                               in_norm
    1.latents / 1.media_pos_emb                   latents / media_pos
    1.layers.{i}.0.{norm_media,norm_latents,to_q,to_kv,to_out}   blocks.{i}.attn.*
    1.layers.{i}.1.0 / .1.1 / .1.3                blocks.{i}.ff.norm / fc1 / fc2
    1.norm                                        out_norm
    2.{weight,bias}                               out_proj
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from seal.core.errors import InputError
from seal.models.seal_checkpoint import OriginalCheckpoint, read_original_checkpoint
from seal.models.seal_llava import (VICUNA_V1_SYSTEM, build_llava, build_processor, load_tokenizer_for,
                                    prepare_out_dir, save_llava_dir, torch_dtype, vicuna_v1_template)
from seal.models.seal_objects import LAYOUT, ObjectProjector, ObjectProjectorConfig, save_object_projector

SOURCE_FORMAT = "seal_vqa_7b"
OBJ = "model.mm_projector_object."


@dataclass
class ConvertReport:
    """What a conversion wrote."""

    source: str
    out: str
    kind: str
    parameters: int
    """Parameters of the written LLaVA."""
    extra_parameters: int
    """Parameters written beside it (object projector, or the VSM's heads)."""
    dtype: str


def object_projector_from(ckpt: OriginalCheckpoint, text_dim: int, vision_dim: int) -> ObjectProjector:
    """The ``mm_projector_object`` tensors as an :class:`ObjectProjector` (sizes from their shapes;
    heads: 16 as in the reference's builder)."""
    kind = str(ckpt.config.get("object_mm_projector_type", "perceiver"))
    if kind != "perceiver":
        raise InputError(f"config.json: object_mm_projector_type {kind!r} is not supported (expected 'perceiver')",
                         ckpt.path / "config.json")
    latents = ckpt.take(OBJ + "1.latents")
    inner = int(ckpt.take(OBJ + "1.layers.0.0.to_q.weight").shape[0])
    heads = 16
    if inner % heads:
        raise InputError(f"tensor {OBJ}1.layers.0.0.to_q.weight has {inner} rows, not a multiple of {heads} heads",
                         ckpt.path)
    cfg = ObjectProjectorConfig(
        vision_dim=vision_dim, text_dim=text_dim, depth=ckpt.count_indexed(OBJ + "1.layers.", ".0.to_q.weight"),
        heads=heads, dim_head=inner // heads, num_latents=int(latents.shape[0]),
        ff_mult=int(ckpt.take(OBJ + "1.layers.0.1.1.weight").shape[0]) // vision_dim,
        num_media=int(ckpt.take(OBJ + "1.media_pos_emb").shape[0]))
    projector = ObjectProjector(cfg)
    target = projector.state_dict()
    state = {}
    for ours, theirs in _object_key_map(cfg.depth).items():
        state[ours] = ckpt.take(OBJ + theirs, tuple(target[ours].shape))
    projector.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return projector


def _object_key_map(depth: int) -> dict[str, str]:
    """``{our key: original key without the mm_projector_object prefix}``."""
    m = {"in_norm.weight": "0.weight", "in_norm.bias": "0.bias", "latents": "1.latents",
         "media_pos": "1.media_pos_emb", "out_norm.weight": "1.norm.weight", "out_norm.bias": "1.norm.bias",
         "out_proj.weight": "2.weight", "out_proj.bias": "2.bias"}
    for i in range(depth):
        a, f = f"blocks.{i}.attn.", f"blocks.{i}.ff."
        o = f"1.layers.{i}."
        for ln in ("norm_media", "norm_latents"):
            m[a + ln + ".weight"], m[a + ln + ".bias"] = o + f"0.{ln}.weight", o + f"0.{ln}.bias"
        for lin in ("to_q", "to_kv", "to_out"):
            m[a + lin + ".weight"] = o + f"0.{lin}.weight"
        m[f + "norm.weight"], m[f + "norm.bias"] = o + "1.0.weight", o + "1.0.bias"
        m[f + "fc1.weight"], m[f + "fc2.weight"] = o + "1.1.weight", o + "1.3.weight"
    return m


def convert_seal_vqa(src: str | Path, dst: str | Path, dtype: str = "auto", vision_tower: str | Path | None = None,
                     tokenizer: str | Path | None = None, overwrite: bool = False) -> ConvertReport:
    """Convert an original SEAL VQA checkpoint directory ``src`` into ``dst`` (see module docstring).

    Args:
        dtype: ``auto`` (the source's), ``float32``, ``float16`` or ``bfloat16``; the object projector
            is saved in the same dtype.
        vision_tower: a local CLIP checkpoint, needed only when ``src`` holds no tower weights.
        tokenizer: where the original tokenizer files are (default ``src``).
        overwrite: replace a non-empty ``dst``.

    Raises:
        InputError: unreadable / incomplete source (one line naming the file), a non-empty ``dst``.
    """
    from seal.core.manifest import model_files, write_manifest
    from seal.core.runs import command_line, git_revision

    src, out = Path(src), Path(dst)
    ckpt = read_original_checkpoint(src)
    if ckpt.config.get("model_type") != "llava_search":
        raise InputError(f"expected a SEAL VQA checkpoint (model_type 'llava_search'), found model_type "
                         f"{ckpt.config.get('model_type')!r}", src / "config.json")
    prepare_out_dir(out, overwrite)
    dt = torch_dtype(dtype, ckpt)
    tok = load_tokenizer_for(ckpt, tokenizer, vicuna_v1_template(VICUNA_V1_SYSTEM))
    model = build_llava(ckpt, tok, vision_tower, dt)
    projector = object_projector_from(ckpt, model.config.text_config.hidden_size,
                                      model.config.vision_config.hidden_size).to(dt)
    ckpt.check_all_used()
    processor = build_processor(model, tok)
    save_llava_dir(model, processor, out, src)
    files = model_files(out) + save_object_projector(projector, out)
    config = {"converted_from": str(src), "source_format": SOURCE_FORMAT, "vwm_layout": LAYOUT,
              "object_tokens": projector.cfg.num_latents, "image_tokens": int(model.config.image_seq_length),
              "chat_template": "vicuna_v1", "dtype": str(dt).removeprefix("torch.")}
    write_manifest(out, "vqa", config, sorted(set(files)),
                   recipe={"command": command_line(), "git_revision": git_revision(),
                           "converted_from": str(src), "format": SOURCE_FORMAT})
    n_extra = sum(p.numel() for p in projector.parameters())
    return ConvertReport(str(src), str(out), "vqa", sum(p.numel() for p in model.parameters()), n_extra,
                         config["dtype"])
