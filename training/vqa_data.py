"""VQA training data: SynthVStar train-split scenes -> supervised examples in the shared VWM layout.

Every scene (rendered on the fly by :func:`eval.synth.sample.render_sample`, JPEG round-tripped at
the benchmark's quality so pixels match the files the evaluation reads) yields several examples,
all built by :func:`seal.vqa.build_training_example` from a :class:`vwm.layout.VisualWorkingMemory`
exactly as inference lays them out (global view letterboxed by ``VWMConfig``, crops with the
``VWMConfig`` settings, the processor resizing both to the model input):

=========  =======================================  ==========================================
tag        view                                     reply
=========  =======================================  ==========================================
search     global view only                         refusal listing the targets
search     global + ground-truth crops (all found)  correct option sentence; letter (shuffled)
search     global + one target "not found"          correct option sentence (best guess)
coarse     global view only                         correct option sentence; letter
coarse     global + ground-truth crop               correct option sentence; letter
text       none (text-only pass)                    correct option sentence; letter
text       global view only                         refusal listing the targets (``text_global_refusal``)
text       global + ground-truth crops              correct option sentence
any        global + one *probe* object's crop       its colour / pattern (``probe_objects``)
any        global view only                         refusal naming a small probe object
any        global view only                         a large probe object's answer (``probe_global_prob``)
=========  =======================================  ==========================================

Probes are extra questions about other objects of the same scene (any role, named uniquely by the
benchmark's rule): they cost no rendering, and they are what teaches the model to read colours and
patterns from pixels. Without them a scene gives one or two answer examples whose replies a tiny
model can memorise from the scene instead (token accuracy 1.0 on the training set, chance with
ground-truth crops on the test split).

A failed search ("not found") is answered with a best guess, never a second refusal: the search
already ran, a refusal would make the agent search the same target again, and a V*Bench answer is
required anyway. The model learns the guess from the found targets and the prior.

Letter examples show the options as ``(A) ...`` lines (short forms as in ``test_questions.jsonl``
with probability ``letter_short_prob``, else the full sentences), shuffled; the reply is the letter.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from seal.core.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import LlavaProcessor

    from eval.synth.config import SynthConfig
    from eval.synth.sample import SynthSample
    from vwm.layout import VWMConfig

VIEWS = ("none", "global", "crops")
"""What an example shows: nothing (text-only pass), the global view, or the global view + VWM targets."""

EXAMPLE_KINDS = ("refusal", "answer", "letter", "not_found", "probe", "probe_refusal", "probe_global",
                 "probe_check", "letter_drill")
"""Every :attr:`ExampleSpec.kind` a scene can yield."""


@dataclass
class VQADataConfig:
    """How SynthVStar scenes become VQA training examples (the scenes come from the ``synth`` section)."""

    letter_short_prob: float = 0.7
    """A letter example shows the short options (``test_questions.jsonl`` style) with this
    probability, else the full option sentences."""
    not_found_prob: float = 0.15
    """A search scene also yields an example with one target marked "not found" (reply: best guess)."""
    text_global_refusal: bool = True
    """A ``text`` scene's global view (its target is small, so not legible there) is answered with
    the refusal, like a ``search`` scene's: the VQA model says what it cannot *see*; whether the
    question's text makes seeing unnecessary is the value-of-vision policy's call (the text-only
    pass answers it). False: answer from the text even with the image shown."""
    letter_refusal_prob: float = 0.3
    """A search scene also yields a global-view letter-format prompt whose reply is the refusal."""
    jpeg_roundtrip: bool = True
    """Encode and decode each rendered scene as JPEG (``synth.jpeg_quality``), like the benchmark files."""
    workers: int = 2
    """Processes rendering scenes and building examples (1 = in this process)."""
    cache_dir: str = ""
    """When set, built examples are saved there (keyed by a hash of everything they depend on) and
    reused by a later run with the same settings. Empty: always rebuild."""
    attribute_maps: bool = True
    """Store each view's per-cell colour / pattern / shape map (:func:`view_attribute_maps`) for the
    recipe's auxiliary dense loss on the vision tower (``vqa_train.attribute_loss``)."""
    bucket_batches: int = 32
    """Examples are sorted by length within windows of this many batches (less padding), then the
    batches are shuffled."""
    probe_objects: int = 6
    """Probe questions per scene: colour or pattern questions about other objects, answered from
    their ground-truth crop (0 = none)."""
    probe_refusal_prob: float = 0.25
    """Probability that a probe about a small object also yields a global-view refusal naming it."""
    probe_global_prob: float = 0.0
    """Probability that a probe about an object of at least ``probe_global_min`` of the image's long
    side also yields a global-view *answer* (kind ``probe_global``): what is legible there is answered,
    not refused, so the refusal learns to depend on the object's size rather than on the view alone.
    0 draws nothing, so earlier recipes' examples stay the same."""
    probe_global_min: float = 0.1
    """Smallest box long side, as a fraction of the image's long side, of a ``probe_global`` object
    (0.1 is ~13 px of a 128 px model input; SynthVStar's coarse targets are 0.17-0.27)."""
    probe_large_first: bool = False
    """Objects of at least ``probe_global_min`` of the image's long side are probed first (then the
    others in random order). A scene holds 0-2 such objects among 25-60, so with random order few
    are probed and ``probe_global`` answers stay rare (31 in 16.6 k examples of 1400 scenes);
    first, 143 in 23.8 k examples of 2000 scenes (``configs/train/vqa_fast_long.yaml``: a large
    probe may still be spatial, unnameable or not drawn). Applied after ``probe_focus_shapes``, so
    it takes precedence. False keeps earlier recipes' examples the same."""
    probe_letter_prob: float = 0.3
    """Probability that a probe is asked in the letter format instead of as an open question."""
    letter_drills: int = 0
    """Text-only letter questions per scene (kind ``letter_drill``, no image): a statement that holds
    the answer, the question, the shuffled options, the letter as the reply, about other objects of
    the scene (colour, pattern or left / right, as the ``text`` questions are asked). They cost no
    vision tokens, and they teach the step a letter answer adds to an option answer: finding the
    option that says what the model knows and replying with its letter. 0 draws nothing, so earlier
    recipes' examples stay the same."""
    probe_spatial_prob: float = 0.3
    """Probability that a probe is a left / right question about two objects (both crops shown)."""
    probe_check_prob: float = 0.0
    """Probability that a (non-spatial) probe is a *hit-check* question instead
    (:func:`eval.synth.questions.check_question`: the object's colour or pattern asked by its shape
    alone, or its shape asked by its colour or pattern + "object"), the questions
    :mod:`search.hit_check.words` asks about a search box. Any object of the scene (near misses
    included), one crop. 0 draws nothing, so earlier recipes' examples stay the same."""
    probe_check_shape_prob: float = 0.5
    """Share of the hit-check probes that ask the shape (the rest: colour or pattern, half each)."""
    probe_focus_shapes: list[str] = field(default_factory=list)
    """Objects of these shapes are probed first (the others follow in random order), e.g. the pair
    a VQA hit check confuses; [] = every object in random order (earlier recipes' examples stay the same)."""
    box_jitter: float = 0.0
    """Each crop's box has its edges moved by up to this fraction of the box's side (uniform, each
    edge on its own), as a localizer's boxes are off the truth: a model trained on exact ground-truth
    boxes learns their exact framing (the stage-5 shape reader accepted 80% of targets on the true
    box, 48% with the edges moved by up to 10%). The coordinates written in the prompt are the moved
    box's, as at inference. 0 draws nothing, so earlier recipes' examples stay the same."""
    only_kinds: list[str] = field(default_factory=list)
    """Keep only the examples of these kinds (:data:`EXAMPLE_KINDS`), e.g. ``[letter_drill]`` for a
    text-only letter stage; every choice is drawn as without the filter. [] keeps every kind."""

    def __post_init__(self) -> None:
        for name in ("probe_objects", "letter_drills"):
            if getattr(self, name) < 0:
                raise ConfigError(f"vqa_train.data.{name}: expected >= 0, found {getattr(self, name)}")
        for name in ("letter_short_prob", "not_found_prob", "letter_refusal_prob", "probe_refusal_prob",
                     "probe_letter_prob", "probe_spatial_prob", "probe_global_prob", "probe_global_min",
                     "probe_check_prob", "probe_check_shape_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"vqa_train.data.{name}: expected 0..1, found {getattr(self, name)}")
        self.probe_focus_shapes = [str(v) for v in self.probe_focus_shapes]
        from eval.synth.vocab import SHAPES

        unknown = sorted(set(self.probe_focus_shapes) - set(SHAPES))
        if unknown:
            raise ConfigError(f"vqa_train.data.probe_focus_shapes: unknown shapes {unknown}; known: {list(SHAPES)}")
        self.only_kinds = [str(v) for v in self.only_kinds]
        unknown = sorted(set(self.only_kinds) - set(EXAMPLE_KINDS))
        if unknown:
            raise ConfigError(f"vqa_train.data.only_kinds: unknown kinds {unknown}; known: {list(EXAMPLE_KINDS)}")
        if not 0.0 <= self.box_jitter <= 0.4:
            raise ConfigError(f"vqa_train.data.box_jitter: expected 0..0.4 of the box side, found {self.box_jitter}")
        if self.workers < 1 or self.bucket_batches < 1:
            raise ConfigError("vqa_train.data.workers and bucket_batches: expected >= 1, found "
                              f"{self.workers} / {self.bucket_batches}")


@dataclass(frozen=True)
class ExampleSpec:
    """One training example before tokenisation.

    Attributes:
        kind: one of :data:`EXAMPLE_KINDS` (for logging, tests and ``only_kinds``).
        question: the user text (for letter examples: question, option lines and instruction).
        reply: the assistant reply to learn.
        view: one of :data:`VIEWS`.
        targets: VWM entries ``(name, box_xyxy or None)`` in full-image pixels; only for ``crops``.
    """

    kind: str
    question: str
    reply: str
    view: str
    targets: tuple[tuple[str, tuple[float, float, float, float] | None], ...] = ()


def scene_specs(sample: "SynthSample", rng: np.random.Generator, cfg: VQADataConfig) -> list[ExampleSpec]:
    """The examples one scene yields (see the module table); ``rng`` drives every random choice."""
    from seal.vqa.refusal import format_refusal

    q = sample.question
    answer = q.options[0]
    found = tuple((t.name, _box_xyxy(t)) for t in sample.targets)

    def letter(view: str, targets=()) -> ExampleSpec:
        return _letter_spec("letter", q, rng, cfg, view, targets)

    if sample.tag == "search":
        specs = [ExampleSpec("refusal", q.question, format_refusal([t.name for t in sample.targets]), "global"),
                 ExampleSpec("answer", q.question, answer, "crops", found),
                 letter("crops", found)]
        if rng.random() < cfg.not_found_prob:
            lost = int(rng.integers(len(found)))
            targets = tuple((name, None if i == lost else box) for i, (name, box) in enumerate(found))
            specs.append(ExampleSpec("not_found", q.question, answer, "crops", targets))
        if rng.random() < cfg.letter_refusal_prob:
            refusal = letter("global")
            specs.append(ExampleSpec("refusal", refusal.question, specs[0].reply, "global"))
        return specs
    if sample.tag == "coarse":
        return [ExampleSpec("answer", q.question, answer, "global"), letter("global"),
                ExampleSpec("answer", q.question, answer, "crops", found), letter("crops", found)]
    if sample.tag == "text":
        on_global = (ExampleSpec("refusal", q.question, format_refusal([t.name for t in sample.targets]), "global")
                     if cfg.text_global_refusal else ExampleSpec("answer", q.question, answer, "global"))
        return [ExampleSpec("answer", q.question, answer, "none"), letter("none"), on_global,
                ExampleSpec("answer", q.question, answer, "crops", found)]
    raise ValueError(f"unknown sample tag {sample.tag!r}")


def _box_xyxy(obj) -> tuple[float, float, float, float]:
    from seal.core.geometry import xywh_to_xyxy

    return tuple(float(v) for v in xywh_to_xyxy(obj.bbox))  # type: ignore[return-value]


def _letter_spec(kind: str, q, rng: np.random.Generator, cfg: VQADataConfig, view: str, targets=()) -> ExampleSpec:
    """``q`` in the letter format: short options with probability ``cfg.letter_short_prob`` (else the
    sentences), shuffled; the reply is the correct option's letter."""
    from seal.vqa.prompts import letter_question

    options = q.short_options if rng.random() < cfg.letter_short_prob else q.options
    order = rng.permutation(len(options))
    text = letter_question(q.question, [options[i] for i in order])
    return ExampleSpec(kind, text, "ABCDEFGH"[int(np.argmax(order == 0))], view, tuple(targets))


def _named(sample: "SynthSample", obj, kind: str):
    """A copy of ``obj`` named as a ``kind`` question names its target (``NAME_ATTRS``), or None when
    another object of the scene answers to that name too."""
    import copy

    from eval.synth.scene import NAME_ATTRS, describe, matches

    keys = NAME_ATTRS[kind]
    if sum(matches(o.attrs, obj.attrs, keys) for o in sample.objects) != 1:
        return None
    named = copy.copy(obj)
    named.name = describe(obj.attrs, keys)
    return named


SMALL_PROBE = 0.04
"""A probe object whose box long side is at most this fraction of the image's long side is not
legible in the global view (SynthVStar's small targets and distractors are <= 0.032)."""


def probe_specs(sample: "SynthSample", rng: np.random.Generator, cfg: VQADataConfig,
                min_gap: float = 0.12) -> list[ExampleSpec]:
    """Up to ``cfg.probe_objects`` probe examples: colour / pattern questions about other objects of
    the scene, each named uniquely by the benchmark's rule (``NAME_ATTRS``) and answered from its
    ground-truth crop; small ones sometimes also as a global-view refusal (kind ``probe_refusal``);
    left / right questions about pairs at least ``min_gap`` of the image width apart
    (``synth.min_spatial_gap``)."""
    from eval.synth.questions import attribute_question
    from seal.vqa.refusal import format_refusal

    if cfg.probe_objects == 0:
        return []
    asked = {t.name for t in sample.targets}
    long_side = max(sample.image.size)
    specs: list[ExampleSpec] = []
    order = rng.permutation(len(sample.objects))
    if cfg.probe_focus_shapes:
        focus = set(cfg.probe_focus_shapes)
        order = sorted(order, key=lambda j: sample.objects[int(j)].shape not in focus)  # stable: random within
    if cfg.probe_large_first:
        large = cfg.probe_global_min * long_side
        order = sorted(order, key=lambda j: sample.objects[int(j)].box_side < large)
    for i in order:
        if len(specs) >= cfg.probe_objects:
            break
        obj = sample.objects[int(i)]
        if rng.random() < cfg.probe_spatial_prob:
            spec = _spatial_probe(sample, rng, obj, asked, min_gap * sample.image.size[0])
            if spec is not None:
                specs.append(spec)
            continue
        if cfg.probe_check_prob > 0 and rng.random() < cfg.probe_check_prob:
            specs.append(_check_probe(rng, obj, cfg))
            continue
        kind = "color" if rng.random() < 0.5 else "pattern"
        named = _named(sample, obj, kind)
        if named is None or named.name in asked:
            continue
        q = attribute_question(rng, kind, named, sample.objects)
        targets = ((named.name, _box_xyxy(obj)),)
        if rng.random() < cfg.probe_letter_prob:
            specs.append(_letter_spec("probe", q, rng, cfg, "crops", targets))
        else:
            specs.append(ExampleSpec("probe", q.question, q.options[0], "crops", targets))
        side = obj.box_side
        if side <= SMALL_PROBE * long_side and rng.random() < cfg.probe_refusal_prob:
            specs.append(ExampleSpec("probe_refusal", q.question, format_refusal([named.name]), "global"))
        elif side >= cfg.probe_global_min * long_side and cfg.probe_global_prob > 0 \
                and rng.random() < cfg.probe_global_prob:
            specs.append(ExampleSpec("probe_global", q.question, q.options[0], "global"))
    return specs


def letter_drill_specs(sample: "SynthSample", rng: np.random.Generator, cfg: VQADataConfig) -> list[ExampleSpec]:
    """``cfg.letter_drills`` text-only letter examples (see :attr:`VQADataConfig.letter_drills`) about
    objects of the scene drawn at random, named uniquely by the benchmark's rule; a left / right
    drill pairs two such objects apart along x."""
    from eval.synth.questions import attribute_question, spatial_question

    specs: list[ExampleSpec] = []
    for _ in range(4 * cfg.letter_drills):
        if len(specs) >= cfg.letter_drills:
            break
        objs = [sample.objects[int(i)] for i in rng.permutation(len(sample.objects))[:2]]
        kind = ("color", "pattern", "spatial")[int(rng.integers(3))]
        if kind == "spatial":
            a, b = (_named(sample, o, "spatial") for o in objs)
            if a is None or b is None or abs(a.cx - b.cx) < 1.0:
                continue
            q = spatial_question(rng, a, b, text_only=True)
        else:
            named = _named(sample, objs[0], kind)
            if named is None:
                continue
            q = attribute_question(rng, kind, named, sample.objects, text_only=True)
        specs.append(_letter_spec("letter_drill", q, rng, cfg, "none"))
    return specs


def _check_probe(rng: np.random.Generator, obj, cfg: VQADataConfig) -> ExampleSpec:
    """A hit-check question about ``obj`` (half of them its shape), answered from its crop; the VWM
    entry carries the question's name, as the VQA hit check lays it out."""
    from eval.synth.questions import check_name, check_question

    kind = "shape" if rng.random() < cfg.probe_check_shape_prob else ("color" if rng.random() < 0.5 else "pattern")
    by = "color" if rng.random() < 0.5 else "pattern"
    q = check_question(rng, kind, obj, by)
    targets = ((check_name(kind, obj, by), _box_xyxy(obj)),)
    if rng.random() < cfg.probe_letter_prob:
        return _letter_spec("probe_check", q, rng, cfg, "crops", targets)
    return ExampleSpec("probe_check", q.question, q.options[0], "crops", targets)


def _spatial_probe(sample: "SynthSample", rng: np.random.Generator, a, asked: set[str],
                   gap_px: float) -> ExampleSpec | None:
    """"Is the ``a`` on the left or right side of the ``b``?" for a random partner ``b`` of the scene
    at least ``gap_px`` apart from ``a`` along x (both named by colour + shape, uniquely), answered
    from both crops; None when ``a`` has no such partner."""
    from eval.synth.questions import spatial_question

    first = _named(sample, a, "spatial")
    if first is None:
        return None
    partners = [o for o in sample.objects if o is not a and _named(sample, o, "spatial") is not None
                and (o.bbox[0] >= a.bbox[0] + a.bbox[2] + gap_px or a.bbox[0] >= o.bbox[0] + o.bbox[2] + gap_px)]
    if not partners:
        return None
    second = _named(sample, partners[int(rng.integers(len(partners)))], "spatial")
    if {first.name, second.name} & asked:
        return None
    q = spatial_question(rng, first, second)
    return ExampleSpec("probe", q.question, q.options[0], "crops",
                       ((first.name, _box_xyxy(first)), (second.name, _box_xyxy(second))))


def jittered(spec: ExampleSpec, rng: np.random.Generator, fraction: float, image_size: tuple[int, int]) -> ExampleSpec:
    """``spec`` with each target box moved by :func:`seal.core.geometry.jitter_xyxy` in the ``(width,
    height)`` image; a target marked not found stays so."""
    from dataclasses import replace

    from seal.core.geometry import jitter_xyxy

    moved = tuple((name, None if box is None else jitter_xyxy(box, rng, fraction, *image_size))
                  for name, box in spec.targets)
    return replace(spec, targets=moved)


def spec_memory(spec: ExampleSpec, image, vwm_config: "VWMConfig", view=None):
    """The :class:`~vwm.layout.VisualWorkingMemory` an example is laid out from (None: text only);
    ``view``: the scene's global view when already letterboxed (see ``VisualWorkingMemory.view``)."""
    from vwm.layout import VisualWorkingMemory

    if spec.view not in VIEWS:
        raise ValueError(f"unknown view {spec.view!r}")
    if spec.view == "none":
        return None
    vwm = VisualWorkingMemory(global_image=image, config=vwm_config, global_view=view)
    if spec.view == "crops":
        for name, box in spec.targets:
            vwm.add_target(name, box, 1.0 if box is not None else 0.0)
    return vwm


def render_scene(synth: "SynthConfig", index: int, jpeg_roundtrip: bool) -> "SynthSample":
    """Benchmark scene ``index`` of ``synth.split`` (same plan and stream as ``seal bench synth``)."""
    from PIL import Image

    from eval.synth.sample import render_sample, sample_plan, sample_rng

    tag, kind = sample_plan(synth, index)
    sample = render_sample(sample_rng(synth.seed, synth.split, index), synth, tag=tag, kind=kind)
    if jpeg_roundtrip:
        buf = io.BytesIO()
        sample.image.save(buf, "JPEG", quality=synth.jpeg_quality)
        sample.image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return sample


def scene_examples(processor: "LlavaProcessor", synth: "SynthConfig", cfg: VQADataConfig,
                   vwm_config: "VWMConfig", index: int, seed: int = 0) -> tuple[list[dict], list[np.ndarray]]:
    """Render scene ``index`` and build its examples, its choices (option shuffles, which target is
    "not found", probes, box jitter) drawn from ``(seed, index)``, ``seed`` the run's.

    Returns:
        ``(examples, images)``: each example holds ``input_ids`` / ``labels`` (L,) int64 numpy arrays,
        ``image_ids`` (indices into ``images``, in placeholder order), ``kind`` and ``view``;
        ``images`` are the scene's distinct preprocessed views, (3, S, S) float16 numpy arrays.
    """
    from seal.vqa.examples import build_training_example

    sample = render_scene(synth, index, cfg.jpeg_roundtrip)
    rng = np.random.default_rng([seed, index])
    objects = [o.to_json() for o in sample.objects]
    size = processor.image_processor.crop_size["height"]
    grid = size // processor.patch_size
    examples, images, maps = [], [], []
    global_view = None  # the scene's letterboxed global view, made by its first example and shared
    jitter_rng = np.random.default_rng([seed, index, 1])  # its own stream: the other draws stay put
    specs = scene_specs(sample, rng, cfg) + probe_specs(sample, rng, cfg, synth.min_spatial_gap)
    if cfg.letter_drills:  # after the others, from the same stream: earlier recipes' draws stay put
        specs += letter_drill_specs(sample, rng, cfg)
    for spec in specs:
        if cfg.box_jitter > 0:
            spec = jittered(spec, jitter_rng, cfg.box_jitter, sample.image.size)
        if cfg.only_kinds and spec.kind not in cfg.only_kinds:  # dropped after its draws
            continue
        vwm = spec_memory(spec, sample.image, vwm_config, global_view)
        if vwm is not None:
            global_view = vwm.view()
        ex = build_training_example(processor, spec.question, spec.reply, vwm)
        ids = []
        views = [] if ex["pixel_values"] is None else ex["pixel_values"].numpy().astype(np.float16)
        regions = [] if vwm is None else view_regions(vwm)
        for view, region in zip(views, regions):
            match = next((k for k, seen in enumerate(images) if np.array_equal(seen, view)), None)
            if match is None:
                images.append(view)
                if cfg.attribute_maps:
                    maps.append(view_attribute_maps(region, objects, size, grid))
                match = len(images) - 1
            ids.append(match)
        examples.append({"input_ids": ex["input_ids"].numpy(), "labels": ex["labels"].numpy(),
                         "image_ids": ids, "kind": spec.kind, "view": spec.view, "tag": sample.tag})
    return examples, images, maps


def view_regions(vwm) -> list[tuple[float, float, float, float]]:
    """Full-image ``xyxy`` region shown by each image of ``vwm``'s prompt, in placeholder order: the
    whole image (the global view), then each entry's crop region."""
    w, h = vwm.global_image.size
    return [(0.0, 0.0, float(w), float(h))] + [e.crop_region_xyxy for e in vwm.entries if e.crop is not None]


def view_attribute_maps(region, objects: list[dict], size: int, grid: int) -> np.ndarray:
    """(3, grid, grid) int16 attribute classes of the objects under each vision patch of a view that
    letterboxes ``region`` into ``size`` px (the layout's letterbox then the processor's resize keep
    the geometry): :func:`training.vsm_data.attribute_maps`, legible from 10 px at the model input."""
    from seal.core.geometry import Frame
    from training.vsm_data import attribute_maps

    frame = Frame(tuple(float(v) for v in region), size, size, letterbox=True)
    return attribute_maps(frame, objects, (grid, grid), min_legible_px=10.0)


class VQADataset:
    """Examples of many scenes with their de-duplicated images, served as shuffled padded batches."""

    def __init__(self, examples: list[dict], images: np.ndarray, pad_token_id: int,
                 maps: np.ndarray | None = None) -> None:
        """``examples`` as :func:`scene_examples` returns them (``image_ids`` indexing ``images``);
        ``images`` (N, 3, S, S) float16 preprocessed views; ``maps`` (N, 3, g, g) int16 their
        attribute maps, or None."""
        self.examples = examples
        self.images = images
        self.pad_token_id = pad_token_id
        self.maps = maps

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, indices: Sequence[int]) -> dict[str, "torch.Tensor"]:
        """:func:`seal.vqa.collate` of the examples at ``indices`` (images upcast to float32)."""
        import torch

        from seal.vqa.examples import collate

        rows = []
        for i in indices:
            ex = self.examples[i]
            views = [torch.from_numpy(self.images[k]).float() for k in ex["image_ids"]]
            rows.append({"input_ids": torch.from_numpy(ex["input_ids"]),
                         "attention_mask": torch.ones(len(ex["input_ids"]), dtype=torch.long),
                         "labels": torch.from_numpy(ex["labels"]),
                         "pixel_values": torch.stack(views) if views else None})
        batch = collate(rows, self.pad_token_id)
        if self.maps is not None:
            ids = [k for i in indices for k in self.examples[i]["image_ids"]]
            if ids:  # (N_img, 3, g, g) in pixel_values order
                batch["attributes"] = torch.from_numpy(self.maps[ids].astype(np.int64))
        return batch

    def epochs(self, batch_size: int, seed: int, bucket_batches: int) -> Callable[[int], Iterator[list[int]]]:
        """``epoch -> batch keys`` (example indices, for :meth:`batch`): shuffle (seeded by ``seed`` and
        ``epoch``), sort by length within windows of ``bucket_batches`` batches, cut into batches,
        shuffle the batches."""

        def epoch_keys(epoch: int) -> Iterator[list[int]]:
            rng = np.random.default_rng([seed, epoch])
            order = rng.permutation(len(self.examples))
            window = batch_size * bucket_batches
            groups = []
            for start in range(0, len(order), window):
                chunk = sorted(order[start:start + window], key=lambda i: len(self.examples[i]["input_ids"]))
                groups += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
            for g in rng.permutation(len(groups)):
                yield groups[int(g)]

        return epoch_keys


def build_dataset(processor: "LlavaProcessor", synth: "SynthConfig", cfg: VQADataConfig,
                  vwm_config: "VWMConfig", processor_dir: str | Path | None = None, seed: int = 0,
                  log=print) -> VQADataset:
    """Render ``synth.n`` scenes of ``synth.split`` and build their examples (cached when configured).

    Args:
        processor: the model's processor (used in this process when ``cfg.workers == 1``).
        processor_dir: where the processor is saved, so worker processes can load it
            (required when ``cfg.workers > 1``).
        seed: the run's seed (scene ``i``'s example choices are drawn from ``(seed, i)``).
    """
    cache = _cache_path(processor, synth, cfg, vwm_config, seed)
    if cache is not None and cache.is_file():
        log(f"loading cached examples from {cache}")
        with cache.open("rb") as f:
            examples, images, maps = pickle.load(f)
        return VQADataset(examples, images, processor.tokenizer.pad_token_id, maps)
    examples, views, view_maps = [], [], []
    for scene_ex, scene_im, scene_maps in _scene_results(processor, synth, cfg, vwm_config, processor_dir, seed, log):
        for ex in scene_ex:
            ex["image_ids"] = [k + len(views) for k in ex["image_ids"]]
        examples += scene_ex
        views += scene_im
        view_maps += scene_maps
    size = processor.image_processor.crop_size["height"]
    images = np.stack(views) if views else np.zeros((0, 3, size, size), dtype=np.float16)
    maps = np.stack(view_maps) if cfg.attribute_maps and view_maps else None
    del views
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump((examples, images, maps), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache)
        log(f"cached {len(examples)} examples in {cache}")
    return VQADataset(examples, images, processor.tokenizer.pad_token_id, maps)


def _scene_results(processor, synth, cfg, vwm_config, processor_dir, seed, log):
    import multiprocessing as mp
    import time

    started = time.time()
    every = max(1, synth.n // 10)
    if cfg.workers == 1:
        results = (scene_examples(processor, synth, cfg, vwm_config, i, seed) for i in range(synth.n))
        pool = None
    else:
        if processor_dir is None:
            raise ValueError("build_dataset: processor_dir is required with workers > 1")
        pool = mp.get_context("spawn").Pool(cfg.workers, initializer=_worker_init,
                                             initargs=(str(processor_dir), synth, cfg, vwm_config, seed))
        results = pool.imap(_worker_scene, range(synth.n), chunksize=4)
    try:
        for i, res in enumerate(results, start=1):
            if i % every == 0 or i == synth.n:
                log(f"built scene {i}/{synth.n} ({time.time() - started:.0f} s)")
            yield res
    finally:
        if pool is not None:
            pool.close()
            pool.join()


_WORKER: dict = {}


def _worker_init(processor_dir: str, synth, cfg, vwm_config, seed: int) -> None:
    import torch
    from transformers import AutoProcessor

    torch.set_num_threads(1)
    _WORKER.update(processor=AutoProcessor.from_pretrained(processor_dir, local_files_only=True),
                   synth=synth, cfg=cfg, vwm=vwm_config, seed=seed)


def _worker_scene(index: int):
    w = _WORKER
    return scene_examples(w["processor"], w["synth"], w["cfg"], w["vwm"], index, w["seed"])


def _cache_path(processor, synth, cfg: VQADataConfig, vwm_config, seed: int) -> Path | None:
    """``cache_dir/vqa_examples_<hash>.npz``, the hash covering every input of the examples."""
    if not cfg.cache_dir:
        return None
    key = {**{k: v for k, v in asdict(cfg).items() if k not in ("workers", "cache_dir", "bucket_batches")},
           "seed": seed}
    blob = json.dumps({"synth": asdict(synth), "data": key, "vwm": asdict(vwm_config),
                       "tokenizer": processor.tokenizer.backend_tokenizer.to_str(),
                       "image_processor": processor.image_processor.to_json_string(),
                       "patch_size": processor.patch_size}, sort_keys=True, default=str)
    return Path(cfg.cache_dir) / f"vqa_examples_{hashlib.sha256(blob.encode()).hexdigest()[:16]}.pkl"
