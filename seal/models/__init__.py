"""Shared model pieces: the project tokenizer and the LLaVA backbone (tiny builder + strict loader).

Importing this package does not import torch or transformers; they load on first use.
"""

from seal.models.backbone import TinyBackboneConfig, build_processor, build_tiny_llava, load_llava, save_llava
from seal.models.tokenizer import (
    IMAGE_TOKEN,
    LOC_TOKEN,
    SPECIAL_TOKENS,
    chat_prompt,
    encode_reply,
    load_tokenizer,
    save_tokenizer,
    train_tokenizer,
)

__all__ = ["IMAGE_TOKEN", "LOC_TOKEN", "SPECIAL_TOKENS", "TinyBackboneConfig", "build_processor",
           "build_tiny_llava", "chat_prompt", "encode_reply", "load_llava", "load_tokenizer", "save_llava",
           "save_tokenizer", "train_tokenizer"]
