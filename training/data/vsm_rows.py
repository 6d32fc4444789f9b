"""Annotated images -> the search model's patches and rows (:class:`training.vsm_data.VSMData`).

Per image (rng from ``(seed, image index)``), the patches are the regions the V* search looks at
(the root and the level-1 nodes of :func:`search.tree.tree_boxes`; level-2 nodes holding an
instance, plus ``level2_negatives`` others) and ``random_crops`` crops around random instances,
their long side scaled into ``crop_object_px`` input pixels. Each patch, letterboxed to the model
input, gets rows (:class:`training.vsm_data.Example`, targets from
:func:`training.vsm_data.row_targets`, the synthetic recipe's legibility rules):

- positives: up to ``positives_per_patch`` names with an instance at least half inside the patch;
  the row's boxes / mask are every instance of that name;
- absent-target negatives: per positive, with probability ``data.negative_rate``, a name of the
  data set that nothing in the *image* answers to (no box, an empty heatmap);
- outside negatives: ``data.outside_negatives`` names annotated elsewhere in the image and nowhere
  in the patch.

An image whose file cannot be read is an :class:`InputError` naming it and its annotation file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from seal.core.errors import InputError
from training.data.records import DetectionImage, DetectionSet

if TYPE_CHECKING:
    from search.config import SearchConfig
    from training.data.config import DetectionDataConfig
    from training.vsm_data import VSMData, VSMDataConfig


def _objects(image: DetectionImage) -> list[dict]:
    """The instances as the synthetic rows' object dicts (``bbox`` xywh, ``polygon``, ``name``)."""
    return [{"name": i.name, "bbox": list(i.bbox_xywh), "polygon": i.outline()} for i in image.instances]


def _inside(obj: dict, region, at_least: float) -> bool:
    from seal.core.geometry import intersection_fraction_xyxy, xywh_to_xyxy

    return intersection_fraction_xyxy(xywh_to_xyxy(obj["bbox"]), region) >= at_least


def image_patches(image: DetectionImage, objects: list[dict], cfg: "VSMDataConfig", search_cfg: "SearchConfig",
                  input_size: int, rng: np.random.Generator) -> list[tuple[int, tuple[float, ...]]]:
    """``(level, region_xyxy)`` of the patches kept for one image (see the module docstring)."""
    from search.tree import tree_boxes
    from training.vsm_data import LEVEL_CROP

    w, h = image.width, image.height
    nodes = tree_boxes(w, h, search_cfg, max_level=2)
    keep = [(lv, b) for lv, b in nodes if lv <= 1]
    deep = [(lv, b) for lv, b in nodes if lv >= 2]
    held = [n for n in deep if any(_inside(o, n[1], 0.5) for o in objects)]
    others = [n for n in deep if n not in held]
    keep += held + [others[int(i)] for i in rng.permutation(len(others))[:cfg.level2_negatives]]
    for _ in range(cfg.random_crops if objects else 0):
        x, y, bw, bh = objects[int(rng.integers(len(objects)))]["bbox"]
        lo, hi = cfg.crop_object_px
        side = max(bw, bh) * input_size / rng.uniform(min(lo, 0.8 * input_size), min(hi, 0.8 * input_size))
        aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.7))))
        cw, ch = min(w, side * np.sqrt(aspect)), min(h, side / np.sqrt(aspect))
        x0 = float(np.clip(rng.uniform(*sorted((x + bw - cw, x))), 0, w - cw))  # the object inside when it fits
        y0 = float(np.clip(rng.uniform(*sorted((y + bh - ch, y))), 0, h - ch))
        keep.append((LEVEL_CROP, (x0, y0, x0 + cw, y0 + ch)))
    return keep


def image_rows(data: DetectionSet, index: int, cfg: "VSMDataConfig", user: "DetectionDataConfig",
               search_cfg: "SearchConfig", input_size: int, heatmap_hw: tuple[int, int],
               fill: tuple[int, int, int], seed: int = 0) -> dict:
    """Patches (P, S, S, 3) uint8, their :class:`training.vsm_data.Patch` records and
    :class:`training.vsm_data.Example` rows of image ``index`` of ``data``."""
    from seal.core.image_source import ImageSource
    from training.vsm_data import Example, Patch, row_targets

    image = data.images[index]
    rng = np.random.default_rng([seed, index])
    objects = _objects(image)
    try:
        src = ImageSource.from_path(image.image)
    except InputError as exc:
        raise InputError(f"image {image.id}: {exc}", image.source) from None
    if src.image.size != (image.width, image.height):
        raise InputError(f"image {image.id}: {image.image} is {src.image.size[0]}x{src.image.size[1]}, the "
                         f"annotations say {image.width}x{image.height}", image.source)
    in_image = {o["name"] for o in objects}
    absent = [n for n in data.names if n not in in_image]
    patches, records, rows = [], [], []
    for level, region in image_patches(image, objects, cfg, search_cfg, input_size, rng):
        pixels, frame = src.crop_resized(region, input_size, input_size, letterbox=True, fill=fill)
        p = len(patches)
        patches.append(pixels)
        records.append(Patch(index, level, tuple(region)))

        def add(name: str) -> None:
            boxes, heat = row_targets(frame, [o for o in objects if o["name"] == name], heatmap_hw, cfg)
            rows.append(Example(p, "detect", name, boxes, heat))

        present = list(dict.fromkeys(o["name"] for o in objects if _inside(o, region, 0.5)))
        for i in rng.permutation(len(present))[:cfg.positives_per_patch]:
            add(present[int(i)])
            if absent and rng.random() < user.negative_rate:
                add(absent[int(rng.integers(len(absent)))])
        outside = sorted({o["name"] for o in objects} - {o["name"] for o in objects if _inside(o, region, 0.05)})
        for i in rng.permutation(len(outside))[:user.outside_negatives]:
            add(outside[int(i)])
    return {"patches": np.stack(patches), "records": records, "examples": rows}


def build_detection_dataset(data: DetectionSet, cfg: "VSMDataConfig", user: "DetectionDataConfig",
                            search_cfg: "SearchConfig", input_size: int, heatmap_hw: tuple[int, int],
                            fill: tuple[int, int, int], seed: int = 0, log=print) -> "VSMData":
    """Every image's patches and rows as one :class:`training.vsm_data.VSMData` (patches without rows
    are kept but never batched)."""
    from dataclasses import replace

    from training.vsm_data import VSMData

    patches, records, examples = [], [], []
    every = max(1, len(data.images) // 10)
    for i in range(len(data.images)):
        part = image_rows(data, i, cfg, user, search_cfg, input_size, heatmap_hw, fill, seed)
        offset = sum(len(p) for p in patches)
        patches.append(part["patches"])
        records += part["records"]
        examples += [replace(e, patch=e.patch + offset) for e in part["examples"]]
        if (i + 1) % every == 0 or i + 1 == len(data.images):
            log(f"cut {i + 1}/{len(data.images)} images")
    if not examples:
        raise InputError("no training rows: no annotated instance lies in any patch", data.images[0].source)
    return VSMData(np.concatenate(patches), records, examples, None)
