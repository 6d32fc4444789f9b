"""The LLaVA part shared by both SEAL converters: original LLaVA (LLaMA + CLIP + ``mm_projector``)
-> a llava-hf ``LlavaForConditionalGeneration`` directory with its processor and chat template.

Key mapping (original -> transformers):

| original | llava-hf |
|---|---|
| ``model.embed_tokens`` / ``model.layers.*`` / ``model.norm`` | ``model.language_model.*`` |
| ``lm_head`` | ``lm_head`` |
| ``model.vision_tower.vision_tower.vision_model.*`` (or ``--vision-tower DIR``) | ``model.vision_tower.*`` |
| ``model.mm_projector`` (linear) | ``model.multi_modal_projector.linear_1``; ``linear_2`` = identity, act ``linear`` |
| ``model.mm_projector.0`` / ``.2`` (``mlp2x_gelu``) | ``linear_1`` / ``linear_2``, act ``gelu`` |

The original splices the image features at a placeholder id (-200); llava-hf needs a real
``<image>`` token, so one row is appended to the embeddings and the LM head (the mean of the others:
its logit is the mean logit, never the argmax) unless the tokenizer already has one. The image is
padded to a square with the CLIP mean colour and resized (``LlavaImageProcessor(do_pad=True)``),
as the reference's ``image_aspect_ratio: pad``; the VSM pads at the top-left instead (its localizer
prepares its own pixels).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seal.core.errors import InputError
from seal.models.seal_checkpoint import OriginalCheckpoint

if TYPE_CHECKING:
    import torch
    from transformers import CLIPVisionConfig, LlavaForConditionalGeneration, LlavaProcessor

IMAGE_TOKEN = "<image>"
VICUNA_V1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                    "The assistant gives helpful, detailed, and polite answers to the user's questions.")
"""``conv_vicuna_v1``: the SEAL VQA LLM's template."""
LLAVA_V1_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                   "The assistant gives helpful, detailed, and polite answers to the human's questions.")
"""``conv_llava_v1``: the SEAL VSM's template."""
TOWER_PREFIX = "model.vision_tower.vision_tower."
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")


def vicuna_v1_template(system: str, image_text: str = IMAGE_TOKEN + "\n") -> str:
    """A Jinja chat template rendering the reference's ``SeparatorStyle.TWO`` conversation::

        {system} USER: {user} ASSISTANT: {reply}</s>USER: ... ASSISTANT:

    Message content may be a string or a list of parts (``{"type": "image"}`` renders
    ``image_text``, ``{"type": "text", "text": ...}`` its text), as llava-hf templates accept.
    """
    content = ("{%- if m['content'] is string -%}{{ m['content'] }}{%- else -%}"
               "{%- for p in m['content'] -%}{%- if p['type'] == 'image' -%}{{ " + json.dumps(image_text) + " }}"
               "{%- elif p['type'] == 'text' -%}{{ p['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}")
    return ("{{- " + json.dumps(system + " ") + " -}}"
            "{%- for m in messages -%}"
            "{%- if m['role'] == 'user' -%}{{- 'USER: ' -}}" + content + "{{- ' ' -}}"
            "{%- elif m['role'] == 'assistant' -%}{{- 'ASSISTANT: ' -}}" + content + "{{- '</s>' -}}"
            "{%- endif -%}{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}")


@dataclass
class LlavaParts:
    """What the converters hand to :func:`build_llava`."""

    config: Any
    """``LlavaConfig``."""
    state: dict[str, "torch.Tensor"]
    """Its full state dict, transformers key names."""


def text_config(ckpt: OriginalCheckpoint, vocab_size: int) -> Any:
    """``LlamaConfig`` of the original LM, from ``config.json`` (sizes checked later, tensor by tensor)."""
    from transformers import LlamaConfig

    heads = ckpt.cfg("num_attention_heads")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=ckpt.cfg("hidden_size"),
        intermediate_size=ckpt.cfg("intermediate_size"),
        num_hidden_layers=ckpt.cfg("num_hidden_layers"),
        num_attention_heads=heads,
        num_key_value_heads=int(ckpt.config.get("num_key_value_heads") or heads),
        rms_norm_eps=float(ckpt.config.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=int(ckpt.config.get("max_position_embeddings", 2048)),
        rope_theta=float(ckpt.config.get("rope_theta", 10000.0)),
        bos_token_id=ckpt.config.get("bos_token_id", 1),
        eos_token_id=ckpt.config.get("eos_token_id", 2),
        pad_token_id=ckpt.config.get("pad_token_id", 0),
        tie_word_embeddings=False,
    )


def lm_state(ckpt: OriginalCheckpoint, text_cfg: Any, new_vocab: int) -> dict[str, "torch.Tensor"]:
    """The LLaMA tensors under llava-hf names, each checked against the shape ``config.json`` implies;
    embedding and LM-head rows beyond the original vocabulary are the mean of the original rows."""
    import torch

    d, ff, n = text_cfg.hidden_size, text_cfg.intermediate_size, text_cfg.num_hidden_layers
    head_dim = d // text_cfg.num_attention_heads
    kv = text_cfg.num_key_value_heads * head_dim
    vocab = int(ckpt.take("model.embed_tokens.weight").shape[0])
    declared = ckpt.config.get("vocab_size")
    if isinstance(declared, int) and declared != vocab:
        raise InputError(f"tensor 'model.embed_tokens.weight' has {vocab} rows, but config.json says "
                         f"vocab_size={declared}", ckpt.path / ckpt.origin.get("model.embed_tokens.weight", ""))
    out: dict[str, torch.Tensor] = {}
    for name, shape in (("embed_tokens.weight", (vocab, d)), ("norm.weight", (d,))):
        out[f"model.language_model.{name}"] = ckpt.take(f"model.{name}", shape)
    out["lm_head.weight"] = ckpt.take("lm_head.weight", (vocab, d))
    per_layer = {"self_attn.q_proj.weight": (d, d), "self_attn.k_proj.weight": (kv, d),
                 "self_attn.v_proj.weight": (kv, d), "self_attn.o_proj.weight": (d, d),
                 "mlp.gate_proj.weight": (ff, d), "mlp.up_proj.weight": (ff, d), "mlp.down_proj.weight": (d, ff),
                 "input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,)}
    for i in range(n):
        for name, shape in per_layer.items():
            out[f"model.language_model.layers.{i}.{name}"] = ckpt.take(f"model.layers.{i}.{name}", shape)
    extra = ckpt.count_indexed("model.layers.", ".input_layernorm.weight")
    if extra != n:
        raise InputError(f"config.json says num_hidden_layers={n}, the weights hold {extra} decoder layers",
                         ckpt.path / "config.json")
    for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        w = out[key]
        if new_vocab > vocab:
            mean = w.float().mean(0, keepdim=True).to(w.dtype)
            out[key] = torch.cat([w, mean.expand(new_vocab - vocab, -1)], 0)
    return out


def vision_parts(ckpt: OriginalCheckpoint, vision_tower: str | Path | None) -> tuple["CLIPVisionConfig", dict]:
    """The CLIP tower: from the checkpoint's own ``model.vision_tower.vision_tower.*`` tensors (the
    config inferred from their shapes; OpenAI CLIP: head width 64, ``quick_gelu``), else from the
    local CLIP checkpoint ``vision_tower`` (the reference loads ``mm_vision_tower`` from the Hub).

    Returns:
        ``(CLIPVisionConfig, {llava-hf key: tensor})``.
    """
    from transformers import CLIPVisionConfig

    own = ckpt.with_prefix(TOWER_PREFIX)  # an explicit --vision-tower replaces them
    if vision_tower is not None:
        return _tower_from_dir(Path(vision_tower))
    if not own:
        raise InputError(f"the checkpoint holds no CLIP vision tower (its config names "
                         f"{ckpt.config.get('mm_vision_tower')!r}); pass --vision-tower DIR, a local copy of it",
                         ckpt.path)
    pre = "vision_model."
    patch = ckpt.take(TOWER_PREFIX + pre + "embeddings.patch_embedding.weight")
    hidden, p = int(patch.shape[0]), int(patch.shape[-1])
    positions = int(ckpt.take(TOWER_PREFIX + pre + "embeddings.position_embedding.weight").shape[0])
    side = round((positions - 1) ** 0.5)
    layers = ckpt.count_indexed(TOWER_PREFIX + pre + "encoder.layers.", ".layer_norm1.weight")
    fc1 = ckpt.take(TOWER_PREFIX + pre + "encoder.layers.0.mlp.fc1.weight")
    cfg = CLIPVisionConfig(hidden_size=hidden, intermediate_size=int(fc1.shape[0]), num_hidden_layers=layers,
                           num_attention_heads=max(1, hidden // 64), image_size=side * p, patch_size=p,
                           hidden_act="quick_gelu", layer_norm_eps=1e-5)
    # transformers 5's CLIPVisionModel has no ``vision_model.`` level
    return cfg, {"model.vision_tower." + k.removeprefix(pre): v for k, v in own.items()}


def _tower_from_dir(path: Path) -> tuple["CLIPVisionConfig", dict]:
    from transformers import CLIPVisionModel

    if not (path / "config.json").is_file():
        raise InputError("--vision-tower: expected a local CLIP checkpoint directory with config.json", path)
    try:
        tower = CLIPVisionModel.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"--vision-tower: cannot load a CLIP vision model ({str(exc).splitlines()[0][:160]})",
                         path) from None
    return tower.config, {"model.vision_tower." + k: v for k, v in tower.state_dict().items()}


def projector_state(ckpt: OriginalCheckpoint, vision_dim: int, text_dim: int) -> tuple[str, dict]:
    """``(projector_hidden_act, {llava-hf key: tensor})`` for the original ``mm_projector``."""
    import torch

    kind = str(ckpt.config.get("mm_projector_type", "linear"))
    p = "model.multi_modal_projector."
    if kind == "linear":
        w = ckpt.take("model.mm_projector.weight", (text_dim, vision_dim))
        b = ckpt.take("model.mm_projector.bias", (text_dim,))
        eye = torch.eye(text_dim, dtype=w.dtype)
        return "linear", {p + "linear_1.weight": w, p + "linear_1.bias": b,
                          p + "linear_2.weight": eye, p + "linear_2.bias": torch.zeros(text_dim, dtype=w.dtype)}
    if kind == "mlp2x_gelu":
        return "gelu", {p + "linear_1.weight": ckpt.take("model.mm_projector.0.weight", (text_dim, vision_dim)),
                        p + "linear_1.bias": ckpt.take("model.mm_projector.0.bias", (text_dim,)),
                        p + "linear_2.weight": ckpt.take("model.mm_projector.2.weight", (text_dim, text_dim)),
                        p + "linear_2.bias": ckpt.take("model.mm_projector.2.bias", (text_dim,))}
    raise InputError(f"config.json: mm_projector_type {kind!r} is not supported (expected 'linear' or "
                     f"'mlp2x_gelu')", ckpt.path / "config.json")


def load_tokenizer_for(ckpt: OriginalCheckpoint, tokenizer_dir: str | Path | None, template: str) -> Any:
    """The original tokenizer (``tokenizer_dir``, default the checkpoint) with ``<image>`` added
    and ``template`` as its chat template."""
    from transformers import AddedToken, AutoTokenizer, LlamaConfig

    where = Path(tokenizer_dir) if tokenizer_dir is not None else ckpt.path
    if not any((where / f).is_file() for f in TOKENIZER_FILES[:2]):
        raise InputError("no tokenizer (tokenizer.model or tokenizer.json); pass --tokenizer DIR", where)
    try:
        # config: the tokenizer of a LLaMA (the checkpoint's own model_type is unknown to transformers)
        tok = AutoTokenizer.from_pretrained(str(where), local_files_only=True, config=LlamaConfig())
    except (OSError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        hint = ("; reading tokenizer.model needs the sentencepiece and protobuf packages (pip install "
                "sentencepiece protobuf), or pass --tokenizer DIR with a tokenizer.json"
                if not (where / "tokenizer.json").is_file() else "")
        raise InputError(f"cannot load the tokenizer ({first}){hint}", where) from None
    if IMAGE_TOKEN not in tok.get_vocab():
        tok.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token  # the reference's choice
    tok.chat_template = template
    return tok


def build_llava(ckpt: OriginalCheckpoint, tokenizer: Any, vision_tower: str | Path | None,
                dtype: "torch.dtype") -> "LlavaForConditionalGeneration":
    """The llava-hf model holding the original LM, CLIP tower and ``mm_projector`` (built on the
    meta device, tensors assigned, so a 7B model is not materialised twice). For saving only: its
    non-persistent buffers (rotary frequencies) stay on the meta device; reload the saved directory
    with :func:`seal.models.backbone.load_llava` to run it."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    image_id = int(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
    vocab = int(ckpt.take("model.embed_tokens.weight").shape[0])
    new_vocab = max(vocab, image_id + 1, len(tokenizer))
    tcfg = text_config(ckpt, new_vocab)
    vcfg, vstate = vision_parts(ckpt, vision_tower)
    mm_hidden = ckpt.config.get("mm_hidden_size", vcfg.hidden_size)
    if mm_hidden != vcfg.hidden_size:
        raise InputError(f"config.json says mm_hidden_size={mm_hidden}, the CLIP tower is {vcfg.hidden_size} wide",
                         ckpt.path / "config.json")
    act, pstate = projector_state(ckpt, vcfg.hidden_size, tcfg.hidden_size)
    select = str(ckpt.config.get("mm_vision_select_feature", "patch"))
    config = LlavaConfig(
        vision_config=vcfg, text_config=tcfg, image_token_index=image_id,
        image_seq_length=(vcfg.image_size // vcfg.patch_size) ** 2,
        vision_feature_layer=int(ckpt.config.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy="default" if select == "patch" else "full",
        projector_hidden_act=act, multimodal_projector_bias=True, tie_word_embeddings=False)
    state = {**lm_state(ckpt, tcfg, new_vocab), **vstate, **pstate}
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    expected = model.state_dict()
    for key, value in state.items():
        if key in expected and tuple(expected[key].shape) != tuple(value.shape):
            raise InputError(f"{key}: expected shape {tuple(expected[key].shape)}, found {tuple(value.shape)}",
                             ckpt.path)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise InputError(f"no source for {len(missing)} tensors of the LLaVA (e.g. {missing[:3]})", ckpt.path)
    model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def build_processor(model: "LlavaForConditionalGeneration", tokenizer: Any) -> "LlavaProcessor":
    """``LlavaProcessor``: pad to square (CLIP mean), resize to the tower's size, CLIP-normalise."""
    from transformers import LlavaImageProcessor, LlavaProcessor

    v = model.config.vision_config
    image_processor = LlavaImageProcessor(do_pad=True, size={"shortest_edge": v.image_size},
                                          crop_size={"height": v.image_size, "width": v.image_size})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=v.patch_size,
                          vision_feature_select_strategy=model.config.vision_feature_select_strategy,
                          num_additional_image_tokens=1, chat_template=tokenizer.chat_template)


def save_llava_dir(model: "LlavaForConditionalGeneration", processor: "LlavaProcessor", out: Path,
                   source: Path) -> None:
    """``save_pretrained`` model + processor into ``out``; the original ``tokenizer.model`` is copied
    beside them when the source has one (so the slow tokenizer can be rebuilt)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    if (source / "tokenizer.model").is_file() and not (out / "tokenizer.model").is_file():
        shutil.copy2(source / "tokenizer.model", out / "tokenizer.model")


DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
               "bfloat16": "bfloat16", "bf16": "bfloat16"}


def torch_dtype(name: str, ckpt: OriginalCheckpoint) -> "torch.dtype":
    """``auto`` = the dtype of the source LM weights; else float32 / float16 / bfloat16 (or
    fp32 / fp16 / bf16)."""
    import torch

    if name == "auto":
        return ckpt.take("model.embed_tokens.weight").dtype
    if name not in DTYPE_NAMES:
        raise InputError(f"--dtype: expected auto or one of {sorted(DTYPE_NAMES)}, found {name!r}")
    return getattr(torch, DTYPE_NAMES[name])


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty output directory unless ``overwrite`` (then it is emptied)."""
    if out.exists() and not out.is_dir():
        raise InputError("the output path exists and is a file", out)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError("the output directory is not empty; pass --overwrite to replace it", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
