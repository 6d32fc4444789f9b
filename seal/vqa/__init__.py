"""The VQA LLM: answering, option scoring, letter choice, the text-only pass, refusal parsing.

Importing this package does not import torch or transformers; they load on first use.
"""

from seal.vqa.examples import IGNORE_INDEX, build_training_example, collate
from seal.vqa.model import TextPassOutput, VQAModel
from seal.vqa.prompts import LETTER_INSTRUCTION, encode_prompt, letter_question
from seal.vqa.refusal import REFUSAL_PREFIX, format_refusal, is_refusal, parse_missing_targets

__all__ = ["IGNORE_INDEX", "LETTER_INSTRUCTION", "REFUSAL_PREFIX", "TextPassOutput", "VQAModel",
           "build_training_example", "collate", "encode_prompt", "format_refusal", "is_refusal",
           "letter_question", "parse_missing_targets"]
