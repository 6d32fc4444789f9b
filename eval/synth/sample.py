"""One SynthVStar sample: a cluttered high-resolution scene plus a V*Bench-style question about it.

:func:`render_sample` is a pure function of a ``numpy.random.Generator`` (training can make samples
on the fly); :func:`sample_rng` and :func:`sample_plan` give the benchmark's deterministic,
split-disjoint streams. Pixel coordinates: full image, x right, y down; boxes ``[x, y, w, h]`` ints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from eval.synth.config import SynthConfig
from eval.synth.draw import draw_object, render_background
from eval.synth.questions import Question, attribute_question, spatial_question
from eval.synth.scene import (NAME_ATTRS, Layout, SceneObject, assign_roles, describe, fits_image, free_attrs,
                              near_miss_attrs, new_object, size_px)

TAGS = ("search", "coarse", "text")
KINDS = ("color", "pattern", "spatial")
SPLIT_IDS = {"train": 1, "val": 2, "test": 3}
STREAM = 0x5EA15
"""Domain tag in every seed sequence, so these streams differ from any other use of the same seed."""
_SCENE, _LETTERS, _PLAN, _KIND, _SPATIAL = 0, 1, 2, 3, 4


@dataclass
class SynthSample:
    """A rendered sample. ``image`` is RGB uint8, ``width x height`` px."""

    image: Image.Image
    tag: str
    """``search`` (small targets) | ``coarse`` (large target) | ``text`` (answer in the question)."""
    question: Question
    targets: list[SceneObject]
    objects: list[SceneObject]
    """Every object in the scene: the targets first (in question order), then the others."""

    @property
    def category(self) -> str:
        """The benchmark folder this sample belongs to."""
        if self.tag == "coarse":
            return "coarse_attributes"
        if self.tag == "text":
            return "text_only"
        return "relative_position" if self.question.kind == "spatial" else "direct_attributes"

    def vstar_json(self) -> dict:
        """The per-sample V*Bench JSON (plus ``tag``): names, ``[x, y, w, h]`` boxes, question, options."""
        return {"target_object": [t.name for t in self.targets], "bbox": [list(t.bbox) for t in self.targets],
                "question": self.question.question, "options": list(self.question.options), "tag": self.tag}

    def sidecar_json(self, image_rel: str) -> dict:
        """The training sidecar: every object with box, outline, attributes and role."""
        return {"image": image_rel, "width": self.image.width, "height": self.image.height, "tag": self.tag,
                "question_kind": self.question.kind, "answer_short": self.question.answer_short,
                "objects": [o.to_json() for o in self.objects]}


def sample_rng(seed: int, split: str, index: int, purpose: int = _SCENE) -> np.random.Generator:
    """The generator of sample ``index`` of ``split``: ``SeedSequence([seed, STREAM, split, index, purpose])``.

    Different splits (or indices) never share a stream, so their scenes never coincide.
    """
    entropy = [seed, STREAM, SPLIT_IDS[split], index, purpose]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def sample_plan(cfg: SynthConfig, index: int) -> tuple[str, str]:
    """``(tag, kind)`` of benchmark sample ``index`` (see :data:`TAGS`, :data:`KINDS`).

    In the mixed suite each block of three consecutive samples holds one of each tag, in seeded
    order, so a sample is the ``index // 3``-th of its tag. Within a tag, spatial questions follow a
    seeded low-discrepancy sequence: among its first ``k`` samples ``k * spatial_fraction`` are spatial
    (within one), and its first sample asks an attribute. Coarse questions are never spatial. An
    attribute question asks the colour with probability ``color_fraction``, else the pattern.
    """
    if cfg.suite == "vstar":
        tag, rank = "search", index
    else:
        block = sample_rng(cfg.seed, cfg.split, index // 3, _PLAN).permutation(len(TAGS))
        tag, rank = TAGS[int(block[index % 3])], index // 3
    attribute = "color" if sample_rng(cfg.seed, cfg.split, index, _KIND).random() < cfg.color_fraction else "pattern"
    if tag == "coarse":
        return tag, attribute
    f = cfg.spatial_fraction
    offset = sample_rng(cfg.seed, cfg.split, TAGS.index(tag), _SPATIAL).uniform(0.0, 1.0 - f)
    spatial = math.floor((rank + 1) * f + offset) - math.floor(rank * f + offset) == 1
    return tag, ("spatial" if spatial else attribute)


def letter_rng(cfg: SynthConfig, index: int) -> np.random.Generator:
    """Generator that shuffles the lettered short options of sample ``index`` (independent of its scene)."""
    return sample_rng(cfg.seed, cfg.split, index, _LETTERS)


def render_sample(rng: np.random.Generator, cfg: SynthConfig, tag: str | None = None,
                  kind: str | None = None) -> SynthSample:
    """Render one sample from ``rng``.

    Args:
        rng: the only source of randomness; the same generator state gives the same sample.
        cfg: sizes, counts and proportions.
        tag: ``search`` | ``coarse`` | ``text``; None picks one (``search`` in the vstar suite).
        kind: ``color`` | ``pattern`` | ``spatial``; None picks by ``spatial_fraction`` /
            ``color_fraction`` (coarse questions are never spatial).
    """
    if tag is None:
        tag = "search" if cfg.suite == "vstar" else TAGS[int(rng.integers(len(TAGS)))]
    if kind is None:
        spatial = tag != "coarse" and rng.random() < cfg.spatial_fraction
        kind = "spatial" if spatial else ("color" if rng.random() < cfg.color_fraction else "pattern")
    if tag not in TAGS or kind not in KINDS or (tag == "coarse" and kind == "spatial"):
        raise ValueError(f"unsupported sample type: tag {tag!r}, kind {kind!r}")

    width, height = canvas_size(rng, cfg, panorama_ok=tag != "coarse")
    long_side = max(width, height)
    keys = NAME_ATTRS[kind]
    layout = Layout(width, height)
    targets = _place_targets(rng, cfg, layout, tag, kind, width, height)
    taken = [(t.attrs, keys) for t in targets]
    objects = list(targets)

    for t in targets:
        for attrs in near_miss_attrs(rng, t.attrs, keys, cfg.near_misses, taken):
            obj = new_object(rng, attrs, size_px(rng, cfg.distractor_size, long_side))
            if layout.place(rng, obj):
                objects.append(obj)
    for _ in range(int(rng.integers(0, cfg.large_objects + 1))):
        attrs = free_attrs(rng, taken)
        obj = new_object(rng, attrs, fits_image(attrs["shape"], size_px(rng, cfg.large_size, long_side), width, height))
        if layout.place(rng, obj):
            objects.append(obj)
    total = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    for _ in range(4 * total):
        if len(objects) >= total:
            break
        obj = new_object(rng, free_attrs(rng, taken), size_px(rng, cfg.distractor_size, long_side))
        if layout.place(rng, obj, tries=20):
            objects.append(obj)
    assign_roles(objects, targets, keys)

    image = render_background(rng, width, height, cfg.clutter_blobs, cfg.clutter_lines)
    for obj in objects:  # footprints never overlap, so the order does not matter
        obj.bbox, obj.polygon = draw_object(image, obj)

    text_only = tag == "text"
    if kind == "spatial":
        question = spatial_question(rng, targets[0], targets[1], text_only)
    else:
        question = attribute_question(rng, kind, targets[0], objects, text_only)
    return SynthSample(image=image, tag=tag, question=question, targets=targets, objects=objects)


def canvas_size(rng: np.random.Generator, cfg: SynthConfig, panorama_ok: bool = True) -> tuple[int, int]:
    """``(width, height)`` px: long side ``long_side * U(1 -+ jitter)``, an ordinary aspect ratio
    (portrait with ``portrait_prob``) or, with ``panorama_prob``, a wide panorama."""
    long_side = cfg.long_side * rng.uniform(1.0 - cfg.long_side_jitter, 1.0 + cfg.long_side_jitter)
    long_side = int(round(min(8192.0, max(256.0, long_side))))
    if panorama_ok and rng.random() < cfg.panorama_prob:
        return long_side, int(round(long_side / rng.uniform(*cfg.panorama_aspect)))
    short = int(round(long_side / cfg.aspect_ratios[int(rng.integers(len(cfg.aspect_ratios)))]))
    return (short, long_side) if rng.random() < cfg.portrait_prob else (long_side, short)


def _place_targets(rng: np.random.Generator, cfg: SynthConfig, layout: Layout, tag: str, kind: str,
                   width: int, height: int) -> list[SceneObject]:
    """The question's target(s), placed first (so they always fit) and named by ``NAME_ATTRS[kind]``."""
    keys = NAME_ATTRS[kind]
    long_side = max(width, height)
    first = free_attrs(rng, [])
    size_range = cfg.coarse_size if tag == "coarse" else cfg.target_size
    targets = [new_object(rng, first, fits_image(first["shape"], size_px(rng, size_range, long_side), width, height),
                          role="target")]
    if kind == "spatial":
        second = free_attrs(rng, [(first, keys)])
        targets.append(new_object(rng, second, size_px(rng, cfg.target_size, long_side), role="target"))
        placed = layout.place_apart(rng, targets[0], targets[1], cfg.min_spatial_gap * width)
    else:
        placed = layout.place(rng, targets[0], tries=1000)
    if not placed:
        raise RuntimeError(f"could not place the targets in a {width}x{height} image")
    for t in targets:
        t.name = describe(t.attrs, keys)
    return targets
