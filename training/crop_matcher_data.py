"""Crop-matcher training data: context crops of SynthVStar objects, labelled with the words that name them.

For each rendered scene (never the ``test`` split) every object gives one crop, cut as the search's
hit check cuts it (:func:`seal.core.crops.extract_crop` at the matcher's ``crop_scale`` / ``min_context_px``,
letterboxed to its input) around the object's box with each edge moved by up to ``jitter`` of the
box side, since the search model's boxes are off the truth. Its label is the multi-hot set of its
colour, pattern and shape words. A share of *background* crops (boxes of object size on clutter,
covering little of any object) carries no word, so a box on nothing matches no name.

Arrays: ``images`` (N, S, S, 3) uint8; ``labels`` (N, V) uint8 over the vocabulary.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seal.core.errors import ConfigError
from training.recipe_common import ordered_map

if TYPE_CHECKING:
    from eval.synth.config import SynthConfig
    from search.vsm.config import CropMatcherConfig


@dataclass
class CropMatcherDataConfig:
    """How scenes become crop-matcher examples (``crop_matcher_train.data``)."""

    jitter: float = 0.15
    """Each box edge moves by up to this fraction of the box side (uniform)."""
    background_per_scene: int = 6
    """Background crops per scene (boxes of object size covering < ``background_max_overlap`` of any object)."""
    background_max_overlap: float = 0.15
    val_scenes: int = 40
    """Scenes of the ``val`` split rendered for the held-out report (0 = none)."""
    workers: int = 2
    """Processes rendering scenes (same crops and cache key for any count)."""
    cache_dir: str = "runs/cache"
    """Where rendered crops are cached (``crop_<key>_<split>.npz``); '' = no cache."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter < 0.5 or not 0.0 <= self.background_max_overlap <= 1.0:
            raise ConfigError("crop_matcher_train.data: expected 0 <= jitter < 0.5 and background_max_overlap in "
                              f"0..1, found {self.jitter} / {self.background_max_overlap}")
        if self.background_per_scene < 0 or self.val_scenes < 0 or self.workers < 1:
            raise ConfigError("crop_matcher_train.data: expected background_per_scene >= 0, val_scenes >= 0, "
                              "workers >= 1")


@dataclass(frozen=True)
class _SceneCrops:
    """Renders one scene and cuts its crops (picklable for worker processes)."""

    synth: "SynthConfig"
    cfg: CropMatcherDataConfig
    matcher: "CropMatcherConfig"
    seed: int

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        from eval.synth.sample import render_sample, sample_rng
        from seal.core.geometry import intersection_fraction_xyxy, jitter_xyxy, xywh_to_xyxy
        from search.vsm.crop_matcher import context_crops

        sample = render_sample(sample_rng(self.synth.seed, self.synth.split, i), self.synth, tag="search")
        rng = np.random.default_rng([self.seed, i])
        image, (w, h) = sample.image, sample.image.size
        vocabulary = self.matcher.vocabulary
        index = {v: k for k, v in enumerate(vocabulary)}
        boxes, labels = [], []
        for obj in sample.objects:
            boxes.append(jitter_xyxy(xywh_to_xyxy(obj.bbox), rng, self.cfg.jitter, w, h))
            row = np.zeros(len(vocabulary), dtype=np.uint8)
            for word in (obj.color, obj.pattern, obj.shape):
                if word in index:
                    row[index[word]] = 1
            labels.append(row)
        sides = [o.box_side for o in sample.objects]
        lo, hi = float(np.percentile(sides, 5)), float(np.percentile(sides, 95))
        objects = [xywh_to_xyxy(o.bbox) for o in sample.objects]
        for _ in range(self.cfg.background_per_scene):
            for _try in range(20):
                side = rng.uniform(lo, hi)
                x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
                box = (x, y, x + side, y + side)
                if all(intersection_fraction_xyxy(o, box) < self.cfg.background_max_overlap for o in objects):
                    boxes.append(box)
                    labels.append(np.zeros(len(vocabulary), dtype=np.uint8))
                    break
        return context_crops(image, boxes, self.matcher), np.stack(labels)


def build_crops(synth: "SynthConfig", cfg: CropMatcherDataConfig, matcher: "CropMatcherConfig", seed: int,
                log=print) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, S, S, 3) uint8, labels (N, V) uint8 over matcher.vocabulary)`` of ``synth.n`` scenes of
    ``synth.split``, cut as ``matcher`` reads crops (scene ``i``'s jitter and background boxes drawn from
    ``(seed, i)``), cached in ``cfg.cache_dir`` under a key of everything that changes them (not
    ``workers``, nor the matcher's architecture)."""
    if synth.split == "test":
        raise ConfigError("synth.split: the crop matcher trains on 'train' or 'val' scenes, found 'test' "
                          "(the held-out evaluation split)")
    job = _SceneCrops(synth, cfg, matcher, seed)
    data_key = {k: v for k, v in asdict(cfg).items() if k not in ("workers", "cache_dir", "val_scenes")}
    key_src = json.dumps({"synth": asdict(synth), "data": {**data_key, "seed": seed},
                          "vocabulary": matcher.vocabulary, "input": matcher.input_size, "scale": matcher.crop_scale,
                          "min": matcher.min_context_px, "v": 1}, sort_keys=True, default=str)
    path = None
    if cfg.cache_dir:
        key = hashlib.sha1(key_src.encode()).hexdigest()[:16]
        path = Path(cfg.cache_dir) / f"crop_{key}_{synth.split}.npz"
        if path.is_file():
            with np.load(path) as cached:
                images, labels = cached["images"], cached["labels"]
            log(f"crop data: {len(images)} crops of {synth.n} {synth.split} scenes from {path}")
            return images, labels
    parts = []
    for done, part in enumerate(ordered_map(job, list(range(synth.n)), cfg.workers), start=1):
        parts.append(part)
        if done % 100 == 0 or done == synth.n:
            log(f"crop data: rendered {done}/{synth.n} {synth.split} scenes")
    images, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, images=images, labels=labels)
        tmp.replace(path)
    return images, labels


def held_out(synth: "SynthConfig", cfg: CropMatcherDataConfig, matcher: "CropMatcherConfig", seed: int,
             log=print) -> tuple[np.ndarray, np.ndarray] | None:
    """The report's crops: ``cfg.val_scenes`` scenes of the ``val`` split (None when 0)."""
    if not cfg.val_scenes:
        return None
    return build_crops(replace(synth, split="val", n=cfg.val_scenes), cfg, matcher, seed, log)
