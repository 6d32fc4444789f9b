"""COCO-format detection / grounding annotations -> :class:`DetectionSet`.

The file (``instances_*.json`` style)::

    {"images": [{"id": 1, "file_name": "0001.jpg", "width": 640, "height": 480}, ...],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [x, y, w, h],
                      "segmentation": [[x1, y1, x2, y2, ...]], "iscrowd": 0,
                      "caption": "the red mug on the left"}, ...],     # caption / phrase optional
     "categories": [{"id": 3, "name": "cup"}, ...]}

``file_name`` is relative to the image root (default: the JSON's folder, or its ``images/``
sub-folder when the JSON sits in ``annotations/``). An annotation's query name is its grounding
``caption`` or ``phrase`` when it has one, else its category's name. ``bbox`` is ``xywh`` in pixels.
A polygon ``segmentation`` gives the heatmap's outline (its largest part); RLE masks and
un-segmented boxes use the box. ``iscrowd`` regions are skipped and counted. Negative names come
from every category of the file (and every phrase). Any other problem is an :class:`InputError`
naming the file and the entry: malformed JSON, an unknown image or category id, a box outside its
image, a missing image, a size that differs from the file's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seal.core.errors import InputError
from training.data.records import DetectionImage, DetectionSet, Instance
from training.data.vstar import check_box


def default_image_root(path: Path) -> Path:
    """Where ``file_name`` paths are read from when no image root is given (see the module docstring)."""
    if path.parent.name == "annotations" and (path.parent.parent / "images").is_dir():
        return path.parent.parent / "images"
    return path.parent


def read_coco(path: str | Path, image_root: str | Path | None = None, check_images: bool = True) -> DetectionSet:
    """Every image of the COCO file ``path`` with its annotations (see the module docstring)."""
    from seal.core.image_io import image_size

    p = Path(path)
    root = Path(image_root) if image_root else default_image_root(p)
    data = _load(p)
    categories: dict[int, str] = {}
    for k, cat in enumerate(_list(data, "categories", p)):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not _text(cat.get("name")):
            raise InputError(f"categories[{k}]: expected {{'id': int, 'name': str}}, found {cat!r}", p)
        categories[cat["id"]] = cat["name"].strip()
    images: dict[int, dict[str, Any]] = {}
    for k, img in enumerate(_list(data, "images", p)):
        if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not _text(img.get("file_name")):
            raise InputError(f"images[{k}]: expected {{'id': int, 'file_name': str, ...}}, found {img!r}", p)
        file = root / img["file_name"]
        where = f"images[{k}] (id {img['id']}, {img['file_name']!r})"
        if img["id"] in images:
            raise InputError(f"{where}: image id {img['id']} appears twice", p)
        if check_images:
            if not file.is_file():
                raise InputError(f"{where}: image not found under {root}", p)
            size = image_size(file)
            given = (img.get("width"), img.get("height"))
            if given != (None, None) and tuple(given) != size:
                raise InputError(f"{where}: width x height {given[0]}x{given[1]} differ from the file's "
                                 f"{size[0]}x{size[1]}", p)
        else:
            size = (img.get("width"), img.get("height"))
            if not all(isinstance(v, int) and v > 0 for v in size):
                raise InputError(f"{where}: expected positive integer width and height", p)
        images[img["id"]] = {"file": file, "size": size, "instances": []}
    skipped = 0
    names: list[str] = list(categories.values())
    for k, ann in enumerate(_list(data, "annotations", p)):
        where = f"annotations[{k}]" + (f" (id {ann.get('id')})" if isinstance(ann, dict) and "id" in ann else "")
        if not isinstance(ann, dict):
            raise InputError(f"{where}: expected an object, found {type(ann).__name__}", p)
        if ann.get("image_id") not in images:
            raise InputError(f"{where}: unknown image_id {ann.get('image_id')!r}", p)
        if ann.get("category_id") not in categories:
            raise InputError(f"{where}: unknown category_id {ann.get('category_id')!r} (known: "
                             f"{sorted(categories)[:10]})", p)
        if ann.get("iscrowd"):
            skipped += 1
            continue
        box = ann.get("bbox")
        if not isinstance(box, list) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
            raise InputError(f"{where}: bbox must be [x, y, w, h] numbers, found {box!r}", p)
        target = images[ann["image_id"]]
        check_box(box, *target["size"], p, where)
        phrase = ann.get("caption", ann.get("phrase"))
        if phrase is not None and not _text(phrase):
            raise InputError(f"{where}: caption / phrase must be a non-empty string, found {phrase!r}", p)
        name = phrase.strip() if phrase else categories[ann["category_id"]]
        if phrase:
            names.append(name)
        target["instances"].append(Instance(name, tuple(float(v) for v in box), _polygon(ann.get("segmentation"))))
    out = tuple(DetectionImage(str(i), v["file"], int(v["size"][0]), int(v["size"][1]), tuple(v["instances"]), p)
                for i, v in images.items())
    if not out:
        raise InputError("expected at least one image, found none", p)
    return DetectionSet(out, tuple(dict.fromkeys(names)), skipped)


def _load(p: Path) -> dict[str, Any]:
    if not p.is_file():
        raise InputError("no such file (expected a COCO-format annotation JSON)", p)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"malformed JSON ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})", p) from None
    if not isinstance(data, dict):
        raise InputError(f"expected a COCO object with images, annotations and categories, found "
                         f"{type(data).__name__}", p)
    return data


def _list(data: dict, key: str, p: Path) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise InputError(f"field {key!r}: expected a list, found {type(value).__name__}", p)
    return value


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _polygon(segmentation: Any) -> tuple[tuple[float, float], ...] | None:
    """The largest part of a polygon segmentation as ``((x, y), ...)``; None for RLE or none."""
    if not isinstance(segmentation, list):
        return None
    parts = [s for s in segmentation if isinstance(s, list) and len(s) >= 6 and len(s) % 2 == 0]
    if not parts:
        return None

    def area(flat: list) -> float:
        xs, ys = flat[0::2], flat[1::2]
        return abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))) / 2

    best = max(parts, key=area)
    return tuple((float(best[i]), float(best[i + 1])) for i in range(0, len(best), 2))


def write_coco(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a COCO object as JSON."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data) + "\n", encoding="utf-8")
    return out
