"""Shared builders of the VSM tests (no tests here): a tiny tokenizer, backbone and VSM."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from PIL import Image

from search.vsm.config import VSMConfig
from seal.models.backbone import TinyBackboneConfig, build_tiny_llava
from seal.models.tokenizer import train_tokenizer

CORPUS = [
    "Please locate the red star in this image. Sure, <LOC>.",
    "According to common sense and visual cues, where is the blue circle most likely to be? <LOC>.",
    "striped square dotted triangle green yellow",
] * 4

BACKBONE = dict(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, max_positions=512,
                image_size=32, patch_size=8, vision_hidden=32, vision_layers=2, vision_heads=2,
                vision_intermediate=64)
"""32 px input, 8 px patches: a 4x4 grid, 16 image tokens, 16x16 heatmaps."""

HEADS = dict(decoder_dim=32, heatmap_heads=2, heatmap_mlp_dim=64, quality_head_hidden=32, box_decoder="queries",
             box_queries=4, box_heads=2, box_mlp_dim=64, lora_r=4, lora_alpha=8, lora_dropout=0.0)


def tiny_tokenizer():
    return train_tokenizer(CORPUS, vocab_size=400)


def tiny_backbone(tokenizer=None):
    return build_tiny_llava(TinyBackboneConfig(**BACKBONE), tokenizer or tiny_tokenizer())


def tiny_vsm(**heads):
    from search.vsm.model import VSMModel

    llava, processor = tiny_backbone()
    return VSMModel.build(llava, processor, VSMConfig(**{**HEADS, **heads}))


def perturb_adapter(model, seed=1, scale=0.5):
    """LoRA B and the <LOC> deltas start at zero; give them values so the adapter matters."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.llava.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)


def scene(size=(400, 300)):
    """A grey image with a red square at (40..80, 30..70) and a blue bar at (250..350, 200..220)."""
    img = Image.new("RGB", size, (128, 128, 128))
    img.paste((220, 20, 20), (40, 30, 80, 70))
    img.paste((20, 20, 220), (250, 200, 350, 220))
    return img


def random_patches(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]
