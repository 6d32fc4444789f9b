"""Shared model pieces: the project tokenizer, the tiny LLaVA backbone (builder + strict loader), the
strict loader of any supported VLM family (:mod:`seal.models.vlm`) and prompts / replies in a
checkpoint's own chat template (:mod:`seal.models.chat`).

Importing this package does not import torch or transformers; they load on first use.
"""

from seal.models.backbone import TinyBackboneConfig, build_processor, build_tiny_llava, load_llava, save_llava
from seal.models.chat import ChatFormat, chat_format
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
from seal.models.vlm import VLM_MODEL_TYPES, load_vlm

__all__ = ["ChatFormat", "IMAGE_TOKEN", "LOC_TOKEN", "SPECIAL_TOKENS", "TinyBackboneConfig", "VLM_MODEL_TYPES",
           "build_processor", "chat_format", "load_vlm",
           "build_tiny_llava", "chat_prompt", "encode_reply", "load_llava", "load_tokenizer", "save_llava",
           "save_tokenizer", "train_tokenizer"]
