"""VSM training data: patches of SynthVStar scenes at the scales the search visits, with targets.

For each rendered scene (``eval.synth.sample.render_sample``, never the ``test`` split) the patches
are the regions the V* search would look at with ``SearchConfig``'s split / leaf rules (the root,
every level-1 node, the level-2 nodes holding a target plus a few others) and random crops around
objects at random scales. Each patch is letterboxed to the square model input with
:meth:`ImageSource.crop_resized` and gets a few prompt rows (:class:`Example`):

- a **positive** ``detect`` row: a name of an object in the patch. Its box targets are the visible,
  *legible* instances (short side >= ``min_legible_px`` input px and >= ``min_visible`` of the box
  inside the patch); the heatmap target is their polygon masks, and for instances too small to be
  legible a square "region" blob of ``region_px`` input px around them, so the heatmap points
  toward a target the box head must not claim yet;
- a **negative** ``detect`` row: a name of an object elsewhere in the image, or a near-miss name
  (one attribute changed) matching nothing in the patch: no boxes, an empty heatmap;
- a **context** row on root / level-1 patches (probability ``context_fraction``): "where is X likely
  to be" for the scene's target, supervised with a wider region blob only (no box supervision).

Frames: boxes are ``cxcywh`` in [0, 1] of the model input; heatmaps (H', W') over the model input
(letterbox padding 0), both from :mod:`search.vsm.targets`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from seal.core.errors import ConfigError
from training.recipe_common import ordered_map

if TYPE_CHECKING:
    from eval.synth.config import SynthConfig
    from search.config import SearchConfig

NAME_KEYS: tuple[tuple[str, ...], ...] = (("color", "shape"), ("pattern", "shape"))
"""The two ways SynthVStar names an object (pattern / spatial questions; colour questions)."""
LEVEL_CROP = -1
"""``Patch.level`` of a random crop (search nodes have level 0, 1, 2, ...)."""


@dataclass
class VSMDataConfig:
    """How scenes become VSM training rows."""

    level2_negatives: int = 3
    """Level-2 search nodes without a target kept per scene (those with a target are always kept)."""
    random_crops: int = 4
    """Random crops around objects per scene."""
    crop_object_px: tuple[float, float] = (8.0, 48.0)
    """Range of the cropped object's long side in model-input pixels."""
    min_legible_px: float = 10.0
    """An instance is a box positive only when its short side is at least this many input pixels."""
    min_visible: float = 0.7
    """... and at least this fraction of its box lies inside the patch."""
    region_px: float = 16.0
    """Side (input px) of the heatmap blob marking an illegible instance."""
    context_px: float = 32.0
    """Side (input px) of the blob supervising a context row."""
    context_fraction: float = 0.3
    """Probability that a root / level-1 patch also gets a context row."""
    near_miss_fraction: float = 0.5
    """Probability that a negative row uses a near-miss name (else a name from elsewhere)."""
    positives_per_patch: int = 1
    """Positive ``detect`` rows per patch (distinct names of objects in view; fewer when fewer exist)."""
    negatives_per_patch: int = 1
    """Negative ``detect`` rows per patch."""
    target_negatives: int = 0
    """Per patch, up to this many more negative rows, each naming a scene target that is *not* in the
    patch while a near miss of it (one name attribute changed) is: the case a search stops on wrongly.
    0 (the earlier recipes) draws nothing extra, so their rows are unchanged."""
    near_miss_crops: float = 0.0
    """Probability that a random crop is centred on a near miss (else, as before, on a target or on
    any object with equal odds)."""
    attribute_maps: bool = False
    """Also store per-patch attribute maps (colour / pattern / shape class of the object covering each
    vision-grid cell) for the auxiliary dense loss (``vsm.attribute_classes``, loss term ``attributes``)."""
    cache_dir: str = "runs/cache"
    """Rendered scenes' patches and rows are cached here (one file per scene); '' disables."""
    workers: int = 1
    """Processes rendering the scenes (1 = this one). Not part of the cache key: the rows are the same."""

    def __post_init__(self) -> None:
        self.crop_object_px = tuple(self.crop_object_px)  # type: ignore[assignment]
        if self.workers < 1:
            raise ConfigError(f"vsm_train.data.workers: expected >= 1, found {self.workers}")
        if self.positives_per_patch < 1 or self.negatives_per_patch < 0:
            raise ConfigError("vsm_train.data.positives_per_patch / negatives_per_patch: expected >= 1 / >= 0, "
                              f"found {self.positives_per_patch} / {self.negatives_per_patch}")
        if self.level2_negatives < 0 or self.random_crops < 0 or self.target_negatives < 0:
            raise ConfigError("vsm_train.data.level2_negatives / random_crops / target_negatives: expected >= 0")
        lo, hi = self.crop_object_px
        if not 0 < lo <= hi:
            raise ConfigError(f"vsm_train.data.crop_object_px: expected 0 < low <= high, found {self.crop_object_px}")
        for name in ("min_visible", "context_fraction", "near_miss_fraction", "near_miss_crops"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"vsm_train.data.{name}: expected 0..1, found {getattr(self, name)}")
        if self.min_legible_px <= 0 or self.region_px <= 0 or self.context_px <= 0:
            raise ConfigError("vsm_train.data.min_legible_px / region_px / context_px: expected > 0")


@dataclass
class Example:
    """One prompt row about one patch.

    Attributes:
        patch: index of the patch in :attr:`VSMData.patches`.
        kind: ``"detect"`` or ``"context"``.
        target: the queried name.
        boxes: (n, 4) float32 ``cxcywh`` in [0, 1] of the model input; (0, 4) = absent / illegible.
        heatmap: (H', W') uint8 in {0, 1} over the model input.
        boxes_valid: whether the box head is supervised on this row.
    """

    patch: int
    kind: str
    target: str
    boxes: np.ndarray
    heatmap: np.ndarray
    boxes_valid: bool = True


@dataclass
class Patch:
    """A region of a scene and its letterboxed pixels. ``region_xyxy``: full-image pixels."""

    scene: int
    level: int
    region_xyxy: tuple[float, float, float, float]


def object_name(obj: dict, keys: tuple[str, ...]) -> str:
    from eval.synth.scene import describe

    return describe({k: obj[k] for k in ("pattern", "color", "shape")}, keys)


def matching(objects: list[dict], keys: tuple[str, ...], values: dict[str, str]) -> list[dict]:
    """Objects answering to the name made of ``values`` on ``keys``."""
    return [o for o in objects if all(o[k] == values[k] for k in keys)]


def _inside(obj: dict, region: tuple[float, ...], at_least: float) -> bool:
    from seal.core.geometry import intersection_fraction_xyxy, xywh_to_xyxy

    return intersection_fraction_xyxy(xywh_to_xyxy(obj["bbox"]), region) >= at_least


def scene_patches(sample_json: dict, targets: list[dict], cfg: VSMDataConfig, search_cfg: "SearchConfig",
                  input_size: int, rng: np.random.Generator) -> list[tuple[int, tuple[float, ...]]]:
    """The ``(level, region_xyxy)`` patches kept for one scene (see the module docstring)."""
    w, h = sample_json["width"], sample_json["height"]
    from search.tree import tree_boxes

    nodes = tree_boxes(w, h, search_cfg, max_level=2)
    keep = [(lv, b) for lv, b in nodes if lv <= 1]
    deep = [(lv, b) for lv, b in nodes if lv >= 2]
    with_target = [n for n in deep if any(_inside(t, n[1], 0.5) for t in targets)]
    others = [n for n in deep if n not in with_target]
    picks = rng.permutation(len(others))[:cfg.level2_negatives]
    keep += with_target + [others[int(i)] for i in picks]
    objects = sample_json["objects"]
    near = [o for o in objects if o["role"] == "near_miss"]
    for _ in range(cfg.random_crops):
        u = rng.random()  # one draw per crop, so near_miss_crops = 0 keeps the earlier recipes' stream
        if near and u < cfg.near_miss_crops:
            pool = near
        else:
            pool = targets if u < cfg.near_miss_crops + 0.5 * (1.0 - cfg.near_miss_crops) else objects
        obj = pool[int(rng.integers(len(pool)))]
        x, y, bw, bh = obj["bbox"]
        side = max(bw, bh) * input_size / rng.uniform(*cfg.crop_object_px)
        aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.7))))
        cw, ch = min(w, side * np.sqrt(aspect)), min(h, side / np.sqrt(aspect))
        x0 = np.clip(rng.uniform(x + bw - cw, x), 0, w - cw)
        y0 = np.clip(rng.uniform(y + bh - ch, y), 0, h - ch)
        keep.append((LEVEL_CROP, (float(x0), float(y0), float(x0 + cw), float(y0 + ch))))
    return keep


def row_targets(frame, objects: list[dict], size_hw: tuple[int, int], cfg: VSMDataConfig,
                blob_px: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Box and heatmap targets of one query whose instances are ``objects`` (full-image annotations).

    Returns ``(boxes (n, 4) float32 cxcywh in [0, 1] of the input, heatmap (H', W') uint8)``. With
    ``blob_px`` every instance is drawn as a square blob of that many input pixels (context rows).
    """
    from seal.core.geometry import intersection_fraction_xyxy, xywh_to_xyxy
    from search.vsm.targets import box_targets_cxcywh, heatmap_target

    sx, sy = frame.scale_xy
    legible, polygons, blobs = [], [], []
    for obj in objects:
        box = xywh_to_xyxy(obj["bbox"])
        if intersection_fraction_xyxy(box, frame.region_xyxy) <= 0:
            continue
        short = min((box[2] - box[0]) * sx, (box[3] - box[1]) * sy)
        visible = intersection_fraction_xyxy(box, frame.region_xyxy)
        ok = short >= cfg.min_legible_px and visible >= cfg.min_visible
        if ok:
            legible.append(box)
        if ok and blob_px is None:
            polygons.append(obj["polygon"])
        else:
            side = blob_px or cfg.region_px
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            hw, hh = max(side / sx, box[2] - box[0]) / 2, max(side / sy, box[3] - box[1]) / 2
            blobs.append((cx - hw, cy - hh, cx + hw, cy + hh))
    boxes = box_targets_cxcywh(frame, legible, min_visible=cfg.min_visible) if legible else np.zeros((0, 4), np.float32)
    heat = heatmap_target(frame, size_hw, boxes_xyxy=blobs, polygons=polygons)
    return boxes.astype(np.float32), heat.astype(np.uint8)


def _near_miss(obj: dict, keys: tuple[str, ...], rng: np.random.Generator) -> dict[str, str]:
    from eval.synth.scene import VALUES

    values = {k: obj[k] for k in keys}
    key = keys[int(rng.integers(len(keys)))]
    values[key] = str(rng.choice([v for v in VALUES[key] if v != obj[key]]))
    return values


def _absent(objects: list[dict], keys: tuple[str, ...], values: dict[str, str], region: tuple[float, ...]) -> bool:
    """Nothing answering to the name ``values`` on ``keys`` reaches into ``region`` (5% of its box)."""
    return not any(_inside(o, region, 0.05) for o in matching(objects, keys, values))


def target_negatives(objects: list[dict], targets: list[dict], present: list[dict],
                     region: tuple[float, ...]) -> list[tuple[tuple[str, ...], dict[str, str]]]:
    """``(keys, values)`` of each target name (both naming ways) that nothing in ``region`` answers to
    while a near miss of it is in ``region`` (``present``: the objects at least half inside)."""
    from eval.synth.scene import is_near_miss

    out = []
    for t in targets:
        for keys in NAME_KEYS:
            values = {k: t[k] for k in keys}
            if _absent(objects, keys, values, region) and any(is_near_miss(o, t, keys) for o in present):
                out.append((keys, values))
    return out


def scene_examples(sample_json: dict, image, index: int, cfg: VSMDataConfig, search_cfg: "SearchConfig",
                   input_size: int, heatmap_hw: tuple[int, int], fill: tuple[int, int, int],
                   seed: int = 0) -> dict[str, Any]:
    """Patches (P, S, S, 3) uint8, their :class:`Patch` records and :class:`Example` rows of scene
    ``index``, its patch and query choices drawn from ``(seed, index)``."""
    from seal.core.image_source import ImageSource

    rng = np.random.default_rng([seed, index])
    objects = sample_json["objects"]
    targets = [o for o in objects if o["role"] == "target"]
    src = ImageSource(image)
    patches, records, examples, attributes = [], [], [], []
    for level, region in scene_patches(sample_json, targets, cfg, search_cfg, input_size, rng):
        pixels, frame = src.crop_resized(region, input_size, input_size, letterbox=True, fill=fill)
        p = len(patches)
        patches.append(pixels)
        if cfg.attribute_maps:
            grid = (heatmap_hw[0] // 4, heatmap_hw[1] // 4)
            attributes.append(attribute_maps(frame, objects, grid, cfg.min_legible_px))
        records.append(Patch(index, level, tuple(region)))
        present = [o for o in objects if _inside(o, region, 0.5)]
        present_targets = [o for o in present if o["role"] == "target"]

        def add(kind: str, keys: tuple[str, ...], values: dict[str, str], blob: float | None = None) -> None:
            name = " ".join(values[k] for k in ("pattern", "color", "shape") if k in keys)
            boxes, heat = row_targets(frame, matching(objects, keys, values), heatmap_hw, cfg, blob)
            examples.append(Example(p, kind, name, boxes, heat, boxes_valid=kind == "detect"))

        # positive: a target when one is in view (always at the coarse levels), else any object in view
        keys = NAME_KEYS[int(rng.integers(2))]
        if level in (0, 1) or present_targets:
            pool = present_targets or targets
        else:
            pool = present
        # (one positive draws with rng.integers, as the shipped recipe's stream did)
        count = 1 if level in (0, 1) or present_targets else cfg.positives_per_patch  # coarse levels: the target
        picks = ([] if not pool else [int(rng.integers(len(pool)))] if count == 1
                 else [int(i) for i in rng.permutation(len(pool))[:count]])
        named: set[str] = set()
        for n, i in enumerate(picks):
            if n > 0:
                keys = NAME_KEYS[int(rng.integers(2))]
            if object_name(pool[i], keys) not in named:
                named.add(object_name(pool[i], keys))
                add("detect", keys, {k: pool[i][k] for k in keys})
        # negative: a near-miss name, or the name of an object outside the patch
        outside = [o for o in objects if not _inside(o, region, 0.05)]
        for _ in range(cfg.negatives_per_patch):
            keys = NAME_KEYS[int(rng.integers(2))]
            for _ in range(10):
                if rng.random() < cfg.near_miss_fraction or not outside:
                    base = (present or objects)[int(rng.integers(len(present or objects)))]
                    values = _near_miss(base, keys, rng)
                else:
                    other = outside[int(rng.integers(len(outside)))]
                    values = {k: other[k] for k in keys}
                if _absent(objects, keys, values, region):
                    add("detect", keys, values)
                    break
        if cfg.target_negatives:
            hard = target_negatives(objects, targets, present, region)
            for i in rng.permutation(len(hard))[:cfg.target_negatives]:
                add("detect", *hard[int(i)])
        if level in (0, 1) and rng.random() < cfg.context_fraction:
            t = targets[int(rng.integers(len(targets)))]
            keys = NAME_KEYS[int(rng.integers(2))]
            add("context", keys, {k: t[k] for k in keys}, blob=cfg.context_px)
    part = {"patches": np.stack(patches), "records": records, "examples": examples}
    if cfg.attribute_maps:
        part["attributes"] = np.stack(attributes)
    return part


ATTRIBUTE_ORDER = ("color", "pattern", "shape")
"""Channels of an attribute map."""


def attribute_classes() -> tuple[int, ...]:
    """Classes per channel of :func:`attribute_maps`: background + each SynthVStar value."""
    from eval.synth.scene import VALUES

    return tuple(1 + len(VALUES[k]) for k in ATTRIBUTE_ORDER)


def attribute_maps(frame, objects: list[dict], grid_hw: tuple[int, int], min_legible_px: float) -> np.ndarray:
    """(3, g, g) int16 class of the object covering each vision-grid cell, per :data:`ATTRIBUTE_ORDER`
    channel: 0 = background, ``1 + index`` into ``VALUES[attr]``; pattern and shape are -100
    (ignored) on objects too small to be legible (short side < ``min_legible_px`` input px), whose
    colour is still supervised. Larger objects are drawn first, so a small one on top keeps its cells."""
    from eval.synth.scene import VALUES
    from seal.core.geometry import intersection_fraction_xyxy, xywh_to_xyxy
    from search.vsm.targets import heatmap_target

    out = np.zeros((len(ATTRIBUTE_ORDER),) + tuple(grid_hw), dtype=np.int16)
    sx, sy = frame.scale_xy
    seen = [o for o in objects if intersection_fraction_xyxy(xywh_to_xyxy(o["bbox"]), frame.region_xyxy) > 0]
    for obj in sorted(seen, key=lambda o: -o["bbox"][2] * o["bbox"][3]):
        cells = heatmap_target(frame, grid_hw, polygons=[obj["polygon"]]) > 0
        legible = min(obj["bbox"][2] * sx, obj["bbox"][3] * sy) >= min_legible_px
        for c, key in enumerate(ATTRIBUTE_ORDER):
            out[c][cells] = 1 + VALUES[key].index(obj[key]) if (legible or key == "color") else -100
    return out


class VSMData:
    """All patches and rows, batched by patch: a batch = ``batch_size`` patches and all their rows."""

    def __init__(self, patches: np.ndarray, records: list[Patch], examples: list[Example],
                 attributes: np.ndarray | None = None) -> None:
        self.patches = patches  # (P, S, S, 3) uint8
        self.attributes = attributes  # (P, 3, g, g) int16 or None (see attribute_maps)
        self.records = records
        self.examples = examples
        self.by_patch: list[list[int]] = [[] for _ in range(len(patches))]
        for i, ex in enumerate(examples):
            self.by_patch[ex.patch].append(i)

    def __len__(self) -> int:
        return len(self.examples)

    def epochs(self, batch_size: int, seed: int) -> Callable[[int], Iterator[list[int]]]:
        """``epoch -> batch keys``: the patches that have rows, shuffled by ``(seed, epoch)``, cut into
        lists of ``batch_size`` patch ids (a batch = those patches and all their rows)."""

        def epoch_keys(epoch: int) -> Iterator[list[int]]:
            order = np.random.default_rng([seed, epoch]).permutation(len(self.patches))
            order = [int(i) for i in order if self.by_patch[int(i)]]
            for start in range(0, len(order) - batch_size + 1, batch_size):
                yield order[start:start + batch_size]

        return epoch_keys

    def rows(self, patch_ids: list[int]) -> list[Example]:
        """The rows of ``patch_ids``, patch by patch."""
        return [self.examples[i] for p in patch_ids for i in self.by_patch[p]]


def make_collate(model, data: VSMData) -> Callable[[list[int]], dict]:
    """``collate(patch ids)`` -> the batch dict of :func:`training.vsm_recipe.loss_fn` for ``model``
    (a :class:`search.vsm.model.VSMModel`) over ``data``'s patches (P, S, S, 3) uint8 and rows: each
    patch is preprocessed once; rows index them.

    Batch: ``pixel_values`` (P, 3, S, S); ``patch_index`` (B,) int64 into them; ``input_ids`` /
    ``attention_mask`` / ``labels`` (B, T) int64; ``targets`` a :class:`VSMTargets`.
    """
    import torch

    from search.vsm.losses import VSMTargets

    patches, attributes = data.patches, data.attributes

    def collate(patch_ids: list[int]) -> dict:
        rows = data.rows(patch_ids)
        local = {p: j for j, p in enumerate(patch_ids)}
        images = [np.array(patches[p]) for p in patch_ids]
        pixels = model.pixel_batch(images)  # the base's own image processing and chat template, on the CPU
        enc = model.prompt_batch([r.kind for r in rows], [r.target for r in rows], with_reply=True)
        targets = VSMTargets(
            heatmaps=torch.from_numpy(np.stack([r.heatmap for r in rows]).astype(np.float32)),
            boxes=[torch.from_numpy(r.boxes) for r in rows],
            heatmap_valid=torch.ones(len(rows), dtype=torch.bool),
            boxes_valid=torch.tensor([r.boxes_valid for r in rows]),
            attributes=(None if attributes is None else
                        torch.from_numpy(np.stack([attributes[r.patch] for r in rows]).astype(np.int64))),
        )
        return {"pixel_values": pixels, "patch_index": torch.tensor([local[r.patch] for r in rows]), **enc,
                "targets": targets}

    return collate


def build_dataset(synth: "SynthConfig", cfg: VSMDataConfig, search_cfg: "SearchConfig", input_size: int,
                  heatmap_hw: tuple[int, int], fill: tuple[int, int, int], seed: int = 0, log=print) -> VSMData:
    """Render ``synth.n`` scenes of ``synth.split`` (search-tag samples) and build their rows (scene
    ``i``'s patch and query choices drawn from ``(seed, i)``, ``seed`` the run's).

    Each scene's result is cached in ``cfg.cache_dir/vsm_<key>/scene_<i>.pkl`` where the key hashes
    everything that changes it except ``synth.n`` (of the search config, only the tree's
    :data:`search.tree.TREE_FIELDS`; not the cache's own folder nor ``workers``), so a longer run
    reuses a shorter run's scenes and a new search-time option does not invalidate the cache.
    """
    from dataclasses import replace

    from search.tree import TREE_FIELDS

    if synth.split == "test":
        raise ConfigError("synth.split: the VSM recipe trains on 'train' or 'val' scenes, found 'test'")
    data_key = {**{k: v for k, v in asdict(cfg).items() if k not in ("workers", "cache_dir")}, "seed": seed}
    tree = {k: getattr(search_cfg, k) for k in TREE_FIELDS}
    key_src = json.dumps({"synth": asdict(replace(synth, n=1)), "data": data_key, "search": tree, "input": input_size,
                          "heat": list(heatmap_hw), "fill": list(fill), "v": 1}, sort_keys=True, default=str)
    key = hashlib.sha1(key_src.encode()).hexdigest()[:16]
    cache = Path(cfg.cache_dir) / f"vsm_{key}" if cfg.cache_dir else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    job = _SceneJob(synth, cfg, search_cfg, input_size, tuple(heatmap_hw), tuple(fill), cache, seed)
    parts: list[dict] = [None] * synth.n  # type: ignore[list-item]
    todo = []
    for i in range(synth.n):
        path = job.path(i)
        if path is not None and path.is_file():
            parts[i] = pickle.loads(path.read_bytes())
        else:
            todo.append(i)
    for done, (i, part) in enumerate(ordered_map(job, todo, cfg.workers), start=1):
        parts[i] = part
        if done % 50 == 0 or done == len(todo):
            log(f"rendered {done}/{len(todo)} scenes" + (f" ({cfg.workers} processes)" if cfg.workers > 1 else ""))
    patches, records, examples, attributes = [], [], [], []
    for part in parts:
        offset = sum(len(p) for p in patches)
        patches.append(part["patches"])
        records += part["records"]
        examples += [replace(e, patch=e.patch + offset) for e in part["examples"]]
        if cfg.attribute_maps:
            attributes.append(part["attributes"])
    return VSMData(np.concatenate(patches), records, examples,
                   np.concatenate(attributes) if cfg.attribute_maps else None)


@dataclass(frozen=True)
class _SceneJob:
    """Everything one scene's patches and rows depend on (picklable for worker processes)."""

    synth: "SynthConfig"
    cfg: VSMDataConfig
    search_cfg: "SearchConfig"
    input_size: int
    heatmap_hw: tuple[int, int]
    fill: tuple[int, int, int]
    cache: Path | None
    seed: int

    def path(self, i: int) -> Path | None:
        return self.cache / f"scene_{i:05d}.pkl" if self.cache is not None else None

    def __call__(self, i: int) -> tuple[int, dict]:
        """Render scene ``i``, build its rows and cache them (written under a temporary name first, so
        an interrupted run never leaves a truncated file)."""
        from eval.synth.sample import render_sample, sample_rng

        sample = render_sample(sample_rng(self.synth.seed, self.synth.split, i), self.synth, tag="search")
        part = scene_examples(sample.sidecar_json(""), sample.image, i, self.cfg, self.search_cfg, self.input_size,
                              self.heatmap_hw, self.fill, self.seed)
        path = self.path(i)
        if path is not None:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL))
            tmp.replace(path)
        return i, part
