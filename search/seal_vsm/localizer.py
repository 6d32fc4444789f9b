"""The ``seal_vsm`` localizer: a converted SEAL VSM behind :class:`search.localizer.Localizer`.

Per region (full-image ``xyxy``), as the reference's ``VSM.inference`` reads a patch:

- CLIP input: the region padded to a square at the top-left with the CLIP mean colour, resized to
  the tower's side (224);
- OWL-ViT input: the region stretched to the detector's square input (768);
- the ``[LOC]`` state for "Please locate the {target} in this image." queries the detector (boxes
  + scores, ``sigmoid`` of the class logits; the top ``max_boxes`` kept) and the heatmap decoder
  (mask logits over the region, the search-cue heatmap).

Vision features are cached per region (``cache_size`` regions), so another target or a cue request
on a seen region costs only the LM and the heads. ``suggest_region`` asks the VSM the reference's
common-sense question, takes the phrase after "most likely to appear" (the reference parses it
with spaCy; here: the words after the last mention of the target, a leading preposition dropped,
``region ...`` when another preposition follows) and returns the heatmap of that phrase.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from seal.core.errors import ConfigError
from seal.core.image_source import ImageSource
from search.localizer import BoxXYXY, Detection, LocalizerStats

if TYPE_CHECKING:
    import torch

    from search.seal_vsm.model import SealVSM

NAME = "seal_vsm"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""OpenAI CLIP statistics: the CLIP tower's and OWL-ViT's (``OwlViTProcessor``) normalisation."""
PREPOSITIONS = ("on", "in", "at", "near", "under", "above", "below", "behind", "beside", "inside", "by",
                "along", "over", "next to", "in front of", "on top of")


@dataclass
class SealVSMLocalizerConfig:
    """Knobs of the ``seal_vsm`` localizer."""

    max_boxes: int = 100
    """Candidate boxes kept per region (of the detector's g*g patches), best first."""
    batch_size: int = 4
    """Regions per forward pass."""
    cache_size: int = 64
    """Regions whose vision features are kept (per image)."""
    cue_max_new_tokens: int = 100
    """Reply length of the common-sense question (reference: 100)."""

    def __post_init__(self) -> None:
        for name in ("max_boxes", "batch_size", "cache_size", "cue_max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"seal_vsm.{name}: expected a positive integer, found {value!r}")


class SealVSMLocalizer:
    """:class:`~search.localizer.Localizer` over a :class:`~search.seal_vsm.model.SealVSM`."""

    name = NAME

    def __init__(self, model: "SealVSM", cfg: SealVSMLocalizerConfig | None = None) -> None:
        self.model, self.cfg = model, cfg or SealVSMLocalizerConfig()
        self.image: ImageSource | None = None
        self._cache: OrderedDict[tuple, tuple] = OrderedDict()
        self._stats = LocalizerStats()

    # ---- protocol ------------------------------------------------------------------------------
    def set_image(self, image: ImageSource) -> None:
        self.image = image
        self._cache.clear()
        self._stats = LocalizerStats(extra={"lm_passes": 0.0, "cue_answers": 0.0})

    def stats(self) -> LocalizerStats:
        return self._stats.snapshot()

    def locate(self, target: str, regions: Sequence[BoxXYXY]) -> list[Detection]:
        """One Detection per region: boxes in full-image ``xyxy``, scores in [0, 1], heatmap = mask
        logits ``(4g, 4g)`` over the region (row 0 = its top)."""
        import torch

        out: list[Detection] = []
        for start in range(0, len(regions), self.cfg.batch_size):
            chunk = [tuple(float(v) for v in r) for r in regions[start:start + self.cfg.batch_size]]
            image_embeds, fmap = self._features(chunk)
            with torch.no_grad():
                loc = self.model.loc_states(target, image_embeds)
                logits, boxes = self.model.heads.detect(fmap, loc)
                heat = self.model.heads.heatmap(fmap, loc)
            self._stats.extra["lm_passes"] += 1
            for i, region in enumerate(chunk):
                out.append(self._detection(region, logits[i].float(), boxes[i].float(), heat[i].float()))
        return out

    def suggest_region(self, target: str, region: BoxXYXY) -> np.ndarray | None:
        """Heatmap logits over ``region`` of the phrase the VSM names as the target's likely place;
        None when its reply names none."""
        import torch

        region = tuple(float(v) for v in region)
        image_embeds, fmap = self._features([region])
        reply = self.model.answer(self.model.cfg.cue_prompt.format(target=target), image_embeds,
                                  self.cfg.cue_max_new_tokens)
        self._stats.extra["cue_answers"] += 1
        phrase = cue_phrase(reply, target)
        if phrase is None:
            return None
        with torch.no_grad():
            loc = self.model.loc_states(phrase, image_embeds)
            heat = self.model.heads.heatmap(fmap, loc)
        self._stats.extra["lm_passes"] += 1
        return heat[0].float().cpu().numpy()

    # ---- pixels and features ---------------------------------------------------------------------
    def _features(self, regions: list[tuple]) -> tuple["torch.Tensor", "torch.Tensor"]:
        """``(image_embeds (B, T, D), feature_map (B, g, g, C))``, encoding only uncached regions."""
        import torch

        if self.image is None:
            raise RuntimeError("set_image() must be called before locate()")
        todo = list(dict.fromkeys(r for r in regions if r not in self._cache))  # each new region once
        self._stats.encode_cache_hits += len(regions) - len(todo)
        if todo:
            clip = torch.stack([self._clip_pixels(r) for r in todo])
            owl = torch.stack([self._owl_pixels(r) for r in todo])
            emb, fmap = self.model.encode(clip, owl)
            self._stats.patches_encoded += len(todo)
            for i, r in enumerate(todo):
                self._cache[r] = (emb[i], fmap[i])
                while len(self._cache) > self.cfg.cache_size:
                    self._cache.popitem(last=False)
        feats = [self._cache[r] for r in regions]
        return torch.stack([f[0] for f in feats]), torch.stack([f[1] for f in feats])

    def _clip_pixels(self, region: tuple) -> "torch.Tensor":
        """Region padded at the top-left to a square (CLIP mean fill), ``(3, S, S)`` normalised."""
        side = self.model.clip_side
        w, h = region[2] - region[0], region[3] - region[1]
        scale = side / max(w, h)
        tw, th = max(1, min(side, round(w * scale))), max(1, min(side, round(h * scale)))
        patch, _ = self.image.crop_resized(region, tw, th, letterbox=False)
        canvas = np.empty((side, side, 3), dtype=np.uint8)
        canvas[:] = [int(m * 255) for m in CLIP_MEAN]
        canvas[:th, :tw] = patch
        return _normalise(canvas)

    def _owl_pixels(self, region: tuple) -> "torch.Tensor":
        side = self.model.owl_side
        patch, _ = self.image.crop_resized(region, side, side, letterbox=False)
        return _normalise(patch)

    def _detection(self, region: tuple, logits: "torch.Tensor", boxes: "torch.Tensor",
                   heat: "torch.Tensor") -> Detection:
        import torch

        k = min(self.cfg.max_boxes, logits.shape[0])
        top = torch.topk(logits, k).indices
        cx, cy, bw, bh = boxes[top].cpu().numpy().T.astype(np.float64)
        x0, y0, x1, y1 = region
        w, h = x1 - x0, y1 - y0
        xyxy = np.stack([x0 + (cx - bw / 2) * w, y0 + (cy - bh / 2) * h,
                         x0 + (cx + bw / 2) * w, y0 + (cy + bh / 2) * h], axis=1)
        xyxy = np.clip(xyxy, [x0, y0, x0, y0], [x1, y1, x1, y1])
        scores = torch.sigmoid(logits[top]).cpu().numpy().astype(np.float64)
        return Detection(xyxy, scores, heat.cpu().numpy())


def _normalise(rgb: np.ndarray) -> "torch.Tensor":
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 CLIP-normalised."""
    import torch

    x = (rgb.astype(np.float32) / 255.0 - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def cue_phrase(reply: str, target: str) -> str | None:
    """The place the VSM's common-sense reply names, as a phrase to segment (None if it names none).

    ``"The cup is most likely to appear on the table."`` -> ``"the table"``;
    ``"... to appear on the desk near the window"`` -> ``"region on the desk near the window"``.
    """
    text = " ".join(reply.split())
    low = text.lower()
    key = "most likely to appear"
    if key not in low:
        return None
    rest = text[low.index(key) + len(key):].strip().rstrip(".").strip()
    at = rest.lower().rfind(target.lower())
    if at >= 0:
        rest = rest[at + len(target):].strip()
    if not rest:
        return None
    words = rest.lower()
    for prep in sorted(PREPOSITIONS, key=len, reverse=True):
        if words.startswith(prep + " "):
            tail = rest[len(prep) + 1:].strip()
            pattern = r"\b(" + "|".join(re.escape(p) for p in PREPOSITIONS) + r")\b"
            return f"region {rest}" if re.search(pattern, tail.lower()) else tail
    return f"region {rest}"


def load_seal_vsm_localizer(path: str | Path, device: str = "cpu", dtype: "torch.dtype | None" = None,
                            cfg: SealVSMLocalizerConfig | None = None) -> SealVSMLocalizer:
    """Load a converted SEAL VSM directory (manifest kind ``vsm``, backend ``seal_vsm``) as a localizer.

    Raises:
        InputError: no / another manifest, or a part missing or damaged.
    """
    from seal.core.errors import InputError
    from seal.core.manifest import read_manifest
    from search.seal_vsm.model import BACKEND, SealVSM

    manifest = read_manifest(path, "vsm")
    if manifest.config.get("backend") != BACKEND:
        raise InputError(f"expected a converted SEAL VSM (manifest config.backend {BACKEND!r}), found "
                         f"{manifest.config.get('backend')!r}", Path(path) / "manifest.json")
    return SealVSMLocalizer(SealVSM.from_pretrained(path, device=device, dtype=dtype), cfg)
