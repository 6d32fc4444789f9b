"""Tiny random checkpoints of real VLM families, saved with ``save_pretrained`` (test data, no tests here).

:func:`build_tiny_vlm` builds one family with the stock ``transformers`` classes, so a directory it
writes loads exactly as the real checkpoint of that family would (``AutoModelForImageTextToText`` /
``AutoProcessor``, or the family's own class):

========================  =====================================================  ==============================
family                    model (vision tower + decoder)                         processor (image handling)
========================  =====================================================  ==============================
``"llava"``               ``LlavaForConditionalGeneration`` (CLIP + Llama)       ``LlavaProcessor`` +
                                                                                 ``CLIPImageProcessor`` (resize
                                                                                 shortest edge, centre crop)
``"llava_onevision"``     ``LlavaOnevisionForConditionalGeneration``             ``LlavaOnevisionProcessor``
                          (SigLIP + Qwen2)                                       (any-resolution tiles + newline
                                                                                 tokens)
``"qwen2_5_vl"``          ``Qwen2_5_VLForConditionalGeneration`` (M-RoPE)        ``Qwen2_5_VLProcessor``
                                                                                 (dynamic resolution, 2x2 merge)
========================  =====================================================  ==============================

Each carries the chat template its real checkpoint ships (``tests/data/chat_templates/<family>.jinja``,
the source named beside it) and the project's small BPE tokenizer (``checkpoints/vqa_tiny``) with the
family's special tokens added. The ChatML families (OneVision, Qwen2.5-VL) drop the ``<s>`` prefix,
end a turn with ``<|im_end|>`` (their eos) and pad with ``<|endoftext|>``, as the Qwen tokenizers do.
Sizes are tiny (decoder width 64, 2 layers; vision width 32, 2 layers; images 28-56 px), so a
forward takes milliseconds. A build is deterministic: the same ``seed`` gives the same weights.

:func:`cached_tiny_vlm` builds each ``(family, seed)`` once per test process into a temporary directory.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

FAMILIES: tuple[str, ...] = ("llava", "llava_onevision", "qwen2_5_vl")
"""The families :func:`build_tiny_vlm` builds (the ``model_type`` in each ``config.json``)."""

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = Path(__file__).resolve().parent / "data" / "chat_templates"
TOKENIZER_DIR = REPO / "checkpoints" / "vqa_tiny"

TEXT_HIDDEN, TEXT_LAYERS, TEXT_HEADS = 64, 2, 4
VISION_HIDDEN, VISION_LAYERS, VISION_HEADS = 32, 2, 2

CHATML_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
"""Qwen's turn markers and its pad / end-of-text token."""

QWEN_VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")

QWEN_PATCH, QWEN_MERGE = 7, 2
QWEN_MIN_PIXELS = (QWEN_PATCH * QWEN_MERGE) ** 2 * 4  # 28 x 28 px: 4 merged tokens
QWEN_MAX_PIXELS = (QWEN_PATCH * QWEN_MERGE) ** 2 * 16  # 56 x 56 px: 16 merged tokens

ONEVISION_TILE, ONEVISION_PATCH = 28, 7  # 16 tokens per tile
ONEVISION_PINPOINTS = [[ONEVISION_TILE * i, ONEVISION_TILE * j] for i in range(1, 4) for j in range(1, 4)]


def chat_template(family: str) -> str:
    """The chat template the real ``family`` checkpoint ships (``tests/data/chat_templates``)."""
    _check_family(family)
    return (TEMPLATES / f"{family}.jinja").read_text()


def build_tiny_vlm(family: str, out_dir: Path, seed: int = 0) -> Path:
    """Build a tiny random checkpoint of ``family`` and ``save_pretrained`` model + processor into ``out_dir``.

    Args:
        family: one of :data:`FAMILIES`.
        out_dir: directory to write (created).
        seed: seed of the random weights.

    Returns:
        ``out_dir``, holding ``config.json`` (``model_type == family``), ``model.safetensors``, the
        processor's files and ``chat_template.jinja``.
    """
    import torch
    from transformers.utils import logging as hf_logging

    _check_family(family)
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar on stderr
    tokenizer = _tokenizer(family)
    builders = {"llava": _llava, "llava_onevision": _onevision, "qwen2_5_vl": _qwen2_5_vl}
    torch.manual_seed(seed)
    model, processor = builders[family](tokenizer)
    model.eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out


@functools.lru_cache(maxsize=None)
def cached_tiny_vlm(family: str, seed: int = 0) -> Path:
    """:func:`build_tiny_vlm` once per test process (a temporary directory kept for the session)."""
    root = Path(tempfile.mkdtemp(prefix=f"tiny_{family}_"))
    return build_tiny_vlm(family, root / family, seed=seed)


# ---- tokenizer ---------------------------------------------------------------------------------
def _tokenizer(family: str):
    """The project's BPE with ``family``'s special tokens added (ids appended after the BPE's)."""
    from seal.models.tokenizer import load_tokenizer

    tok = load_tokenizer(TOKENIZER_DIR)
    tok.chat_template = None  # the processor carries the family's template
    if family == "llava":
        return tok  # already holds <s> </s> <pad> <image>
    extra = list(CHATML_TOKENS) + (["<image>", "<video>"] if family == "llava_onevision" else list(QWEN_VISION_TOKENS))
    tok.add_special_tokens({"additional_special_tokens": extra}, replace_extra_special_tokens=False)
    tok.backend_tokenizer.post_processor = None  # Qwen tokenizers add no <s>
    tok.bos_token = None
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    return tok


def _text_kwargs(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=TEXT_HIDDEN, intermediate_size=2 * TEXT_HIDDEN,
                num_hidden_layers=TEXT_LAYERS, num_attention_heads=TEXT_HEADS, num_key_value_heads=TEXT_HEADS,
                max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                tie_word_embeddings=False)


def _token_id(tokenizer, token: str) -> int:
    ids = tokenizer.convert_tokens_to_ids([token])
    if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id:
        raise RuntimeError(f"tokenizer has no token {token!r}")
    return int(ids[0])


# ---- families ----------------------------------------------------------------------------------
def _llava(tokenizer):
    """llava-1.5-hf layout: CLIP (CLS dropped, layer -2) + 2-layer projector + Llama; 32 px, 16 tokens."""
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    side, patch = 32, 8
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN,
                                       num_hidden_layers=VISION_LAYERS, num_attention_heads=VISION_HEADS,
                                       image_size=side, patch_size=patch, projection_dim=VISION_HIDDEN),
        text_config=LlamaConfig(**_text_kwargs(tokenizer)),
        image_token_index=_token_id(tokenizer, "<image>"), image_seq_length=(side // patch) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=-2, projector_hidden_act="gelu",
        tie_word_embeddings=False)
    image_processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=chat_template("llava"))
    return LlavaForConditionalGeneration(config), processor


def _onevision(tokenizer):
    """llava-onevision-ov-hf layout: SigLIP (all patches, last layer) + Qwen2; 28 px tiles of 16 tokens,
    any-resolution grids up to 3 x 3 tiles, a newline token after each row of the unpadded tile grid."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, Qwen2Config, SiglipVisionConfig)

    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN,
                                         num_hidden_layers=VISION_LAYERS, num_attention_heads=VISION_HEADS,
                                         image_size=ONEVISION_TILE, patch_size=ONEVISION_PATCH,
                                         vision_use_head=False),
        text_config=Qwen2Config(**_text_kwargs(tokenizer)),
        image_token_index=_token_id(tokenizer, "<image>"), video_token_index=_token_id(tokenizer, "<video>"),
        vision_feature_select_strategy="full", vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=ONEVISION_PINPOINTS, use_image_newline_parameter=True, tie_word_embeddings=False)
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": ONEVISION_TILE, "width": ONEVISION_TILE}, image_grid_pinpoints=ONEVISION_PINPOINTS)
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=_onevision_video_processor(),
        num_image_tokens=(ONEVISION_TILE // ONEVISION_PATCH) ** 2, vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9", chat_template=chat_template("llava_onevision"))
    return LlavaOnevisionForConditionalGeneration(config), processor


def _onevision_video_processor():
    from transformers import LlavaOnevisionVideoProcessor

    return LlavaOnevisionVideoProcessor(size={"height": ONEVISION_TILE, "width": ONEVISION_TILE})


def _qwen2_5_vl(tokenizer):
    """Qwen2.5-VL layout: windowed ViT with 2x2 patch merger + M-RoPE Qwen2 decoder; 7 px patches,
    images resized to multiples of 14 px between 28 x 28 and 56 x 56 (4 to 16 tokens)."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    head_dim = TEXT_HIDDEN // TEXT_HEADS
    text = _text_kwargs(tokenizer)
    text.update(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                 "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16]})
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(depth=VISION_LAYERS, hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN,
                           num_heads=VISION_HEADS, patch_size=QWEN_PATCH, spatial_merge_size=QWEN_MERGE,
                           temporal_patch_size=2, window_size=2 * QWEN_PATCH * QWEN_MERGE,
                           out_hidden_size=TEXT_HIDDEN, fullatt_block_indexes=[VISION_LAYERS - 1]),
        image_token_id=_token_id(tokenizer, "<|image_pad|>"), video_token_id=_token_id(tokenizer, "<|video_pad|>"),
        vision_start_token_id=_token_id(tokenizer, "<|vision_start|>"),
        vision_end_token_id=_token_id(tokenizer, "<|vision_end|>"), tie_word_embeddings=False)
    pixels = dict(patch_size=QWEN_PATCH, merge_size=QWEN_MERGE, temporal_patch_size=2,
                  min_pixels=QWEN_MIN_PIXELS, max_pixels=QWEN_MAX_PIXELS)
    image_processor = Qwen2VLImageProcessor(**pixels)
    video_processor = Qwen2VLVideoProcessor(**pixels)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=video_processor, chat_template=chat_template("qwen2_5_vl"))
    return Qwen2_5_VLForConditionalGeneration(config), processor


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, found {family!r}")
