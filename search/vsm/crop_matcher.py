"""The search model's second stage: a crop-level word matcher that re-reads a confident box up close.

The VSM scores hundreds of candidate cells per patch at search scale, where a ~30 px object covers
2 x 2 cells of the stride-16 grid: it tells colours apart but confuses shapes and fills (a hexagon
for a circle, dotted for checkered). A two-stage detector re-scores its proposals on a crop of each
box at a resolution of its own; this is that stage. A small convolutional encoder (torchvision
``Conv2dNormActivation`` blocks, learned from scratch in minutes on a CPU: convolutions pick up
outlines and fills far faster than a ViT of the same cost) embeds the box's context crop, and every
word of the target phrase is scored against the embedding on its own; the phrase's probability is
the product over its known words (as :class:`search.vsm.word_match.WordMatch` does per cell), so one
wrong word sinks the box:

    log p(phrase | crop) = sum_w log sigmoid(<u_crop, e_w> / sqrt(D) + b_w)

Words outside the vocabulary are not judged; a phrase with no known word gets no verdict.

Shapes: pixels (B, 3, S, S) float normalised -> crop embedding (B, D); word logits (B, V).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from search.vsm.config import WORD_PATTERN, CropMatcherConfig
from seal.core.errors import ConfigError, InputError

WEIGHTS = "crop_matcher.safetensors"
CONFIG = "crop_matcher.json"


def phrase_words(phrase: str) -> list[str]:
    """Lower-cased words of ``phrase`` in order, duplicates dropped ("Red-star  red" -> [red, star])."""
    out: list[str] = []
    for w in WORD_PATTERN.findall(phrase.lower()):
        if w not in out:
            out.append(w)
    return out


class CropMatcher(nn.Module):
    """Conv encoder of a box's context crop + per-word conjunctive scorer (see the module docstring)."""

    def __init__(self, cfg: CropMatcherConfig) -> None:
        super().__init__()
        from torchvision.ops import Conv2dNormActivation

        if not cfg.vocabulary:
            raise ConfigError("crop matcher: the vocabulary is empty")
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = 3
        for c, s in zip(cfg.widths, cfg.strides):
            layers.append(Conv2dNormActivation(c_in, c, 3, stride=s))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.embed = nn.Linear(c_in, cfg.embed_dim)
        self.words = nn.Embedding(len(cfg.vocabulary), cfg.embed_dim)
        nn.init.normal_(self.words.weight, std=0.1)
        self.bias = nn.Parameter(torch.zeros(len(cfg.vocabulary)))
        self.scale = 1.0 / math.sqrt(cfg.embed_dim)
        self.index = {w: i for i, w in enumerate(cfg.vocabulary)}
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, S, S, 3) uint8 -> (B, 3, S, S) float, normalised."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (B, S, S, 3) uint8 images, found {tuple(images.shape)}")
        return (images.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std

    def embed_crops(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised -> (B, D) crop embeddings."""
        return self.embed(self.body(pixels).mean(dim=(2, 3)))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised -> (B, V) per-word match logits over the whole vocabulary."""
        return self.embed_crops(pixels) @ self.words.weight.T * self.scale + self.bias

    def known(self, phrase: str) -> list[int]:
        """Vocabulary rows of the words of ``phrase`` the matcher knows."""
        return [self.index[w] for w in phrase_words(phrase) if w in self.index]

    @torch.no_grad()
    def phrase_probability(self, images: np.ndarray, phrase: str) -> np.ndarray | None:
        """P(every known word of ``phrase`` describes the crop), per crop.

        Args:
            images: (B, S, S, 3) uint8 crops at ``cfg.input_size``.
        Returns:
            (B,) float64 probabilities, or None when ``phrase`` holds no known word.
        """
        rows = self.known(phrase)
        if not rows:
            return None
        logits = self(self.normalize(torch.from_numpy(np.ascontiguousarray(images))))[:, rows]
        return torch.nn.functional.logsigmoid(logits).sum(dim=1).exp().double().numpy()

    # ---- files -------------------------------------------------------------------------------------
    def save_pretrained(self, out_dir: str | Path, recipe: dict | None = None) -> Path:
        """Write ``crop_matcher.safetensors``, ``crop_matcher.json`` and its ``manifest.json`` (kind
        ``crop_matcher``; ``recipe``: how it was made) into ``out_dir``."""
        from safetensors.torch import save_file

        from seal.core.manifest import write_manifest

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(out / WEIGHTS))
        (out / CONFIG).write_text(json.dumps(asdict(self.cfg), indent=2) + "\n", encoding="utf-8")
        write_manifest(out, "crop_matcher", asdict(self.cfg), [CONFIG, WEIGHTS], recipe=recipe)
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "CropMatcher":
        """Load a folder written by :meth:`save_pretrained` (strictly; eval mode).

        Raises:
            InputError: files missing, unreadable, or not fitting the saved architecture.
        """
        from seal.core.manifest import read_manifest
        from seal.core.weights import load_safetensors

        path = Path(path)
        read_manifest(path, "crop_matcher")  # the kind, and every listed file present
        if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
            raise InputError(f"not a crop matcher folder: expected {CONFIG} and {WEIGHTS}", path)
        state = load_safetensors(path / WEIGHTS, what="crop matcher")  # truncated, corrupt or NaN: names the file
        try:
            cfg = CropMatcherConfig(**json.loads((path / CONFIG).read_text(encoding="utf-8")))
            model = cls(cfg)
            model.load_state_dict(state, strict=True)
        except (OSError, ValueError, TypeError, RuntimeError, ConfigError) as exc:
            raise InputError(f"cannot load the crop matcher ({' '.join(str(exc).split())[:300]})", path) from None
        return model.eval()

    def crop_images(self, image, boxes_xyxy: Sequence[Sequence[float]]) -> np.ndarray:
        """(B, S, S, 3) uint8 context crops of ``boxes_xyxy`` (full-image px) from the PIL ``image``."""
        return context_crops(image, boxes_xyxy, self.cfg)


def context_crops(image, boxes_xyxy: Sequence[Sequence[float]], cfg: CropMatcherConfig) -> np.ndarray:
    """(B, S, S, 3) uint8 crops of ``boxes_xyxy`` (full-image px) from the PIL ``image`` as a matcher of
    ``cfg`` reads them (:func:`seal.core.crops.extract_crop` at its scale, minimum side and input size): the
    one cut of training (:mod:`training.crop_matcher_data`) and the hit check alike."""
    from seal.core.crops import extract_crop

    return np.stack([np.asarray(extract_crop(image, box, cfg.crop_scale, cfg.min_context_px, cfg.input_size).image,
                                dtype=np.uint8) for box in boxes_xyxy])
