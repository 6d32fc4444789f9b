"""``VSMPredictor``: the VSM behind the :class:`search.localizer.Localizer` protocol.

As SAM's ``SamPredictor``: :meth:`set_image` once, then cheap batched calls. Each region
(full-image ``xyxy`` pixels) is resampled to the square model input with
:meth:`ImageSource.crop_resized` (letterboxed in the processor's mean colour); its vision features
are computed once per image and cached by region, so a second target, or a context request, on an
already seen region costs only the language model and the decoders.

Frames: decoder boxes (``cxcywh`` in [0, 1] of the model input) are mapped back to full-image
``xyxy`` with the region's :class:`~seal.core.geometry.Frame` and clipped to the region; heatmaps are
resized to the model input and cropped to the region's content (letterbox padding removed), so
row 0 is the region's top and the map covers exactly the region.

Token cut (``cfg.token_cut``, :mod:`search.vsm.token_cut`): each patch's kept image tokens are chosen
once, when it is encoded, and cached with its features; every LM row for that patch then reads them
(a prompt row with K image tokens). :meth:`stats` counts ``extra["vision_tokens"]`` (the kept tokens
of the patches encoded: what the cost ledger books) and ``extra["lm_image_tokens"]`` (image tokens
over all LM rows run, cached patches included).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from seal.core.geometry import Frame, area_xyxy, clip_xyxy, cxcywh_to_xyxy, denormalize_xyxy
from seal.core.image_source import ImageSource
from search.localizer import BoxXYXY, Detection, LocalizerStats
from search.vsm.config import VSMPredictorConfig
from search.vsm.model import ImageFeatures, VSMModel
from search.vsm.prompts import PromptKind
from search.vsm.token_cut import check_cut, cut_tokens

RegionKey = tuple[float, float, float, float]


class VSMPredictor:
    """Localizer over a :class:`VSMModel` (inference only, no gradients)."""

    name = "vsm"

    def __init__(self, model: VSMModel, cfg: VSMPredictorConfig | None = None, crop_matcher=None) -> None:
        self.model = model.eval()
        self.cfg = cfg or VSMPredictorConfig()
        check_cut(model, self.cfg.token_cut)
        self.crop_matcher = crop_matcher
        """The model's second stage (:class:`search.vsm.crop_matcher.CropMatcher`), when its checkpoint
        has one: the hit check reads confident boxes with it (:mod:`search.hit_check.crop_matcher`)."""
        self.image: ImageSource | None = None
        self._cache: OrderedDict[RegionKey, tuple[ImageFeatures, torch.Tensor, Frame]] = OrderedDict()
        """Per region: its features, the (K, D_text) image tokens the LM reads after the cut, its frame."""
        self._stats = _fresh_stats()

    # ---- Localizer protocol --------------------------------------------------------------------
    def set_image(self, image: ImageSource) -> None:
        """Bind ``image``; clears the feature cache and the counters."""
        self.image = image
        self._cache.clear()
        self._stats = _fresh_stats()

    def locate(self, target: str, regions: Sequence[BoxXYXY]) -> list[Detection]:
        """Look for ``target`` in each region (batched; chunks of ``cfg.max_batch``).

        Returns one :class:`Detection` per region: the box decoder's Q boxes as full-image ``xyxy``
        clipped to the region (zero-area ones dropped), sorted by score (sigmoid, probability the
        target is that box), and the target heatmap (logits) over the region.
        """
        out: list[Detection] = []
        for start in range(0, len(regions), self.cfg.max_batch):
            chunk = list(regions[start:start + self.cfg.max_batch])
            out.extend(self._locate_chunk(target, chunk))
        return out

    def suggest_region(self, target: str, region: BoxXYXY) -> np.ndarray | None:
        """Context cue: (h, w) float32 logits over ``region`` for where ``target`` is likely to be
        (the heatmap decoder under the "most likely location" prompt)."""
        started = time.perf_counter()
        features, tokens, frames = self._features([region])
        with torch.no_grad():
            _, loc = self._loc_states("context", target, features, tokens)
            heatmap, _ = self.model.heatmap_decoder(features.vision, loc)
        result = self._region_heatmap(heatmap[0], frames[0])
        self._stats.extra["seconds"] += time.perf_counter() - started
        return result

    def stats(self) -> LocalizerStats:
        """Patches encoded / served from the cache since :meth:`set_image` (+ ``extra``: LM rows run,
        forward passes, seconds spent in this predictor, ``vision_tokens``: image tokens kept for the
        patches encoded, ``lm_image_tokens``: image tokens the LM rows read); a snapshot."""
        return self._stats.snapshot()

    # ---- internals -----------------------------------------------------------------------------
    def _locate_chunk(self, target: str, regions: list[BoxXYXY]) -> list[Detection]:
        started = time.perf_counter()
        features, tokens, frames = self._features(regions)
        with torch.no_grad():
            enc, loc = self._loc_states("detect", target, features, tokens)
            heatmaps, _ = self.model.heatmap_decoder(features.vision, loc)  # (B, H', W')
            boxes, logits = self.model.detect(features.vision, loc, enc["input_ids"], enc["attention_mask"])
        scores = logits.sigmoid().cpu().double().numpy()
        boxes_np = boxes.cpu().double().numpy()
        detections = []
        for i, frame in enumerate(frames):
            full = self._boxes_to_full(boxes_np[i], frame)
            keep = area_xyxy(full) > 0
            detections.append(Detection(full[keep], scores[i][keep], self._region_heatmap(heatmaps[i], frame)))
        self._stats.extra["seconds"] += time.perf_counter() - started
        return detections

    def _loc_states(self, kind: PromptKind, target: str, features: ImageFeatures,
                    tokens: list[torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One LM forward over ``len(features)`` rows of the same prompt, row i reading ``tokens[i]``
        (K_i, D_text) -> (the encoded prompts, (B, D_text) ``<LOC>`` states)."""
        n = len(features)
        counts = [int(t.shape[0]) for t in tokens]  # uncut: N each, the prompts and inputs as trained
        enc = self.model.prompts([kind] * n, [target] * n, with_reply=False, image_tokens=counts)
        hidden = self.model.hidden_states(enc["input_ids"], enc["attention_mask"], features, tokens)
        self._stats.extra["lm_rows"] += n
        self._stats.extra["lm_image_tokens"] += sum(counts)
        self._stats.extra["forwards"] += 1
        return enc, self.model.loc_states(enc["input_ids"], enc["attention_mask"], hidden)

    def _features(self, regions: Sequence[BoxXYXY]) -> tuple[ImageFeatures, list[torch.Tensor], list[Frame]]:
        """Vision features of each region (encoding the uncached ones in one batch), the (K, D_text) image
        tokens its LM rows read (after the token cut) and its frame."""
        if self.image is None:
            raise RuntimeError("VSMPredictor: call set_image() before locate() / suggest_region()")
        keys = [self._key(r) for r in regions]
        missing: list[RegionKey] = []
        for key in keys:
            if key in self._cache or key in missing:
                self._stats.encode_cache_hits += 1
            else:
                missing.append(key)
        if missing:
            s = self.model.input_size
            patches, frames = [], []
            for key in missing:
                patch, frame = self.image.crop_resized(key, s, s, letterbox=self.model.cfg.letterbox,
                                                       fill=self.model.fill_color)
                patches.append(patch)
                frames.append(frame)
            with torch.no_grad():
                pixels = self.model.preprocess(patches)  # (B, 3, S, S)
                encoded = self.model.encode_images(pixels)
                image_processor = self.model.processor.image_processor
                kept = cut_tokens(encoded.projected, pixels, self.cfg.token_cut, image_processor.image_mean,
                                  image_processor.image_std)  # B x (K, D_text)
            for j, (key, frame) in enumerate(zip(missing, frames)):
                self._cache[key] = (encoded.rows([j]), kept[j], frame)
            self._stats.patches_encoded += len(missing)
            self._stats.extra["vision_tokens"] += sum(int(t.shape[0]) for t in kept)
        for key in keys:
            self._cache.move_to_end(key)
        while len(self._cache) > max(self.cfg.cache_size, len(set(keys))):
            self._cache.popitem(last=False)
        items = [self._cache[k] for k in keys]
        return ImageFeatures.stack([f for f, _, _ in items]), [t for _, t, _ in items], [fr for _, _, fr in items]

    def _key(self, region: BoxXYXY) -> RegionKey:
        x0, y0, x1, y1 = (float(v) for v in region)
        if not (x1 > x0 and y1 > y0):
            raise ValueError(f"region {region}: expected x1 > x0 and y1 > y0 (full-image xyxy pixels)")
        return (round(x0, 3), round(y0, 3), round(x1, 3), round(y1, 3))

    def _boxes_to_full(self, boxes_cxcywh: np.ndarray, frame: Frame) -> np.ndarray:
        """(Q, 4) ``cxcywh`` in [0, 1] of the model input -> (Q, 4) full-image ``xyxy`` inside the region."""
        inp = denormalize_xyxy(cxcywh_to_xyxy(boxes_cxcywh), frame.input_w, frame.input_h)
        local = frame.full_to_region_xyxy(frame.input_to_full_xyxy(inp))
        return frame.region_to_full_xyxy(clip_xyxy(local, frame.region_w, frame.region_h))

    def _region_heatmap(self, heatmap: torch.Tensor, frame: Frame) -> np.ndarray:
        """(H', W') logits over the model input -> (h, w) float32 logits over the region only."""
        s_h, s_w = frame.input_h, frame.input_w
        full = F.interpolate(heatmap[None, None].float(), size=(s_h, s_w), mode="bilinear", align_corners=False)[0, 0]
        sx, sy = frame.scale_xy
        px, py = frame.pad_xy
        x0, y0 = int(round(px)), int(round(py))  # where crop_resized pasted the region
        w = min(s_w - x0, max(1, round(frame.region_w * sx)))
        h = min(s_h - y0, max(1, round(frame.region_h * sy)))
        return full[y0:y0 + h, x0:x0 + w].cpu().numpy().astype(np.float32)


def _fresh_stats() -> LocalizerStats:
    return LocalizerStats(extra={"lm_rows": 0.0, "forwards": 0.0, "seconds": 0.0, "vision_tokens": 0.0,
                                 "lm_image_tokens": 0.0})
