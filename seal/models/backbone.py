"""The shared LLaVA backbone: a tiny random-initialised ``transformers`` LLaVA and its strict loader.

Both project models (the VQA LLM in :mod:`seal.vqa` and the V* search model in ``search/vsm``) are
stock ``LlavaForConditionalGeneration`` models (a ``CLIPVisionModel`` tower, the two-layer LLaVA
projector and a ``LlamaForCausalLM``-style decoder) with a ``LlavaProcessor`` saved beside them,
so a checkpoint directory loads exactly as ``llava-hf/llava-1.5-7b-hf`` would::

    model = LlavaForConditionalGeneration.from_pretrained(dir, local_files_only=True)
    processor = AutoProcessor.from_pretrained(dir, local_files_only=True)

Image path: the processor letterboxes any image to a square (padding with the CLIP mean colour),
resizes it to ``image_size`` and normalises it. One image becomes
``(image_size // patch_size) ** 2`` tokens (the CLS token is dropped: strategy ``"default"``), each
``<image>`` placeholder in the text is expanded by the processor to that many ``<image>`` ids, and
the model scatters the projected patch features into those positions in order, so a prompt may
hold several images (number of images == number of ``<image>`` placeholders).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    import torch
    from transformers import LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast


@dataclass
class TinyBackboneConfig:
    """Sizes of a tiny LLaVA (defaults: ~3 M parameters, 256 tokens per image)."""

    text_hidden: int = 192
    """Hidden size of the LLaMA decoder."""
    text_layers: int = 4
    """Decoder layers."""
    text_heads: int = 4
    """Attention heads of the decoder (``text_hidden`` must be divisible by it)."""
    text_intermediate: int = 512
    """MLP size of the decoder."""
    max_positions: int = 2048
    """Maximum sequence length (text + image tokens; a global view and 4 crops at 256 tokens = 1280)."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""

    image_size: int = 128
    """Side (px) of the square model input; the processor resizes every view to it."""
    patch_size: int = 8
    """Vision patch side (px); tokens per image = (image_size // patch_size) ** 2."""
    vision_hidden: int = 128
    """Hidden size of the CLIP vision tower."""
    vision_layers: int = 3
    """Vision transformer layers (>= 2: features come from the second-to-last layer)."""
    vision_heads: int = 4
    """Attention heads of the vision tower."""
    vision_intermediate: int = 512
    """MLP size of the vision tower."""
    vision_feature_layer: int = -2
    """Which vision hidden state feeds the projector (LLaVA-1.5: -2)."""

    seed: int = 0
    """Seed of the random initialisation."""

    def __post_init__(self) -> None:
        if self.text_hidden % self.text_heads:
            raise ValueError(f"text_hidden ({self.text_hidden}) must be divisible by text_heads ({self.text_heads})")
        if self.vision_hidden % self.vision_heads:
            raise ValueError(
                f"vision_hidden ({self.vision_hidden}) must be divisible by vision_heads ({self.vision_heads})")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.vision_layers < 2 and self.vision_feature_layer == -2:
            raise ValueError("vision_layers must be >= 2 when vision_feature_layer is -2")
        if self.image_tokens >= self.max_positions:
            raise ValueError(f"max_positions ({self.max_positions}) must exceed the {self.image_tokens} "
                             "tokens of one image")

    @property
    def image_tokens(self) -> int:
        """Tokens one image occupies in the sequence."""
        return (self.image_size // self.patch_size) ** 2


def build_tiny_llava(cfg: TinyBackboneConfig,
                     tokenizer: "PreTrainedTokenizerFast") -> tuple["LlavaForConditionalGeneration", "LlavaProcessor"]:
    """A random-initialised LLaVA sized by ``cfg`` around ``tokenizer`` (which must hold ``<image>``).

    Returns:
        ``(model, processor)``: ``model`` in float32 eval mode on CPU, vocabulary = ``len(tokenizer)``,
        ``config.image_token_id`` = the tokenizer's ``<image>`` id; ``processor`` a ``LlavaProcessor``
        whose ``<image>`` expansion matches the model's image token count.
    """
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from seal.models.tokenizer import IMAGE_TOKEN, special_token_ids

    ids = special_token_ids(tokenizer, [IMAGE_TOKEN])
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_positions,
        rope_theta=cfg.rope_theta,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    vision_config = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden,
        intermediate_size=cfg.vision_intermediate,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=ids[IMAGE_TOKEN],
        image_seq_length=cfg.image_tokens,
        vision_feature_select_strategy="default",
        vision_feature_layer=cfg.vision_feature_layer,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    torch.manual_seed(cfg.seed)
    model = LlavaForConditionalGeneration(config).eval()
    _set_generation_ids(model, tokenizer)
    return model, build_processor(cfg, tokenizer)


def build_processor(cfg: TinyBackboneConfig, tokenizer: "PreTrainedTokenizerFast") -> "LlavaProcessor":
    """``LlavaProcessor`` for ``cfg``: letterbox to square (CLIP-mean fill), resize to ``image_size``."""
    from transformers import LlavaImageProcessor, LlavaProcessor

    image_processor = LlavaImageProcessor(
        do_pad=True,
        size={"shortest_edge": cfg.image_size},
        crop_size={"height": cfg.image_size, "width": cfg.image_size},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token, removed again by the "default" strategy
        chat_template=tokenizer.chat_template,
    )


def save_llava(model: "LlavaForConditionalGeneration", processor: "LlavaProcessor",
               out_dir: str | Path, backbone: TinyBackboneConfig | None = None) -> Path:
    """``save_pretrained`` model and processor into one directory (plus ``backbone.json`` when given)."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    if backbone is not None:
        (out / "backbone.json").write_text(json.dumps(asdict(backbone), indent=2) + "\n")
    return out


def load_llava(path: str | Path, device: str = "cpu",
               dtype: "torch.dtype | None" = None) -> tuple["LlavaForConditionalGeneration", "LlavaProcessor"]:
    """Load a LLaVA checkpoint directory (model + processor) from local files, strictly.

    :func:`seal.models.vlm.load_vlm` restricted to ``model_type == "llava"``.

    Args:
        path: a directory written by :func:`save_llava` (or any ``llava`` ``save_pretrained`` dir).
        device: torch device to move the model to.
        dtype: parameter dtype; default ``torch.float32``.

    Returns:
        ``(model, processor)``, the model in eval mode.

    Raises:
        InputError: the path is missing, not a directory, not a LLaVA checkpoint, or its weights do
            not match its config (missing / unexpected / mis-shaped tensors).
    """
    from seal.models.vlm import load_vlm

    return load_vlm(path, device=device, dtype=dtype, accepted=("llava",))


def _set_generation_ids(model: "LlavaForConditionalGeneration", tokenizer: "PreTrainedTokenizerFast") -> None:
    gen = model.generation_config
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
