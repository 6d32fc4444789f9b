"""The ``data`` sections of ``seal train vqa`` and ``seal train vsm``: the user's own data.

``--data PATH`` / ``--image-root DIR`` on the command line set ``data.path`` / ``data.image_root``.
With ``data.path`` empty a recipe renders SynthVStar scenes (the ``synth`` section) as before.
No torch here (``seal cfg`` imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seal.core.errors import ConfigError


@dataclass
class VQAUserDataConfig:
    """The VQA LLM's training data from files."""

    path: str = ""
    """A LLaVA-format conversation JSON / JSONL, or a V*Bench folder / ``test_questions.jsonl``;
    '' = SynthVStar scenes (the ``synth`` section)."""
    image_root: str = ""
    """The folder relative image paths are read from ('' = the data file's folder)."""
    format: Literal["auto", "llava", "vstar"] = "auto"
    """``auto``: a folder is V*Bench, a ``.json`` LLaVA, a ``.jsonl`` LLaVA when its first entry has
    ``conversations``, else V*Bench."""
    max_length: int = 0
    """Refuse a conversation longer than this many tokens after the prompt layout (0 = the base
    model's ``max_position_embeddings``)."""

    def __post_init__(self) -> None:
        if self.format not in ("auto", "llava", "vstar"):
            raise ConfigError(f"data.format: expected auto, llava or vstar, found {self.format!r}")
        if self.max_length < 0:
            raise ConfigError(f"data.max_length: expected >= 0, found {self.max_length}")


@dataclass
class DetectionDataConfig:
    """The search model's training data from files (patches, positives and legibility follow
    ``vsm_train.data``: ``random_crops``, ``crop_object_px``, ``level2_negatives``,
    ``positives_per_patch``, ``min_legible_px``, ``min_visible``, ``region_px``)."""

    path: str = ""
    """A COCO-format detection / grounding JSON (or a folder holding one, in ``annotations/`` or at
    its top), or a V*Bench folder; '' = SynthVStar scenes (the ``synth`` section)."""
    image_root: str = ""
    """The folder image paths are read from ('' = beside the JSON, or ``images/`` beside
    ``annotations/``; a V*Bench folder holds its images)."""
    format: Literal["auto", "coco", "vstar"] = "auto"
    """``auto``: a folder with ``categories.json`` or ``direct_attributes/`` is V*Bench, else COCO."""
    negative_rate: float = 0.5
    """Per positive row, the probability of a negative row naming a target absent from the whole
    image (a category / phrase of the data set not annotated in it): no box, an empty heatmap."""
    outside_negatives: int = 1
    """Per patch, negative rows naming something annotated elsewhere in the image but not in the patch."""

    def __post_init__(self) -> None:
        if self.format not in ("auto", "coco", "vstar"):
            raise ConfigError(f"data.format: expected auto, coco or vstar, found {self.format!r}")
        if not 0.0 <= self.negative_rate <= 1.0:
            raise ConfigError(f"data.negative_rate: expected 0..1, found {self.negative_rate}")
        if self.outside_negatives < 0:
            raise ConfigError(f"data.outside_negatives: expected >= 0, found {self.outside_negatives}")
