"""One loader per model: which reader a data path needs, and the records it gives."""

from __future__ import annotations

import json
from pathlib import Path

from seal.core.errors import InputError
from training.data.config import DetectionDataConfig, VQAUserDataConfig
from training.data.records import Conversation, DetectionSet


def vqa_format(path: Path) -> str:
    """``llava`` or ``vstar`` for the data at ``path`` (see ``VQAUserDataConfig.format``)."""
    if path.is_dir():
        return "vstar"
    if not path.is_file():
        raise InputError("no such file or folder (expected a LLaVA-format JSON or a V*Bench folder)", path)
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8-sig") as f:
            first = next((line for line in f if line.strip()), "")
        try:
            entry = json.loads(first)
        except json.JSONDecodeError:
            return "llava"  # its reader names the bad line
        return "llava" if isinstance(entry, dict) and "conversations" in entry else "vstar"
    return "llava"


def load_conversations(cfg: VQAUserDataConfig, seed: int = 0) -> list[Conversation]:
    """The conversations of ``cfg.path`` (``seed``: the V*Bench letter examples' option order)."""
    from training.data.llava_json import read_llava_json
    from training.data.vstar import vstar_conversations

    path = Path(cfg.path)
    kind = vqa_format(path) if cfg.format == "auto" else cfg.format
    if kind == "vstar":
        return vstar_conversations(path, seed)
    return read_llava_json(path, cfg.image_root or None)


def detection_source(path: Path) -> tuple[str, Path]:
    """``(format, file or folder)`` of the search-model data at ``path``."""
    if path.is_file():
        return ("vstar" if path.suffix == ".jsonl" else "coco"), path
    if not path.is_dir():
        raise InputError("no such file or folder (expected a COCO-format JSON or a V*Bench folder)", path)
    if (path / "categories.json").is_file() or (path / "direct_attributes").is_dir():
        return "vstar", path
    candidates = sorted((path / "annotations").glob("*.json")) if (path / "annotations").is_dir() else []
    candidates = candidates or sorted(path.glob("*.json"))
    if len(candidates) != 1:
        raise InputError(f"expected one COCO JSON in the folder (or its annotations/), found "
                         f"{[c.name for c in candidates]}; pass the file itself", path)
    return "coco", candidates[0]


def load_detections(cfg: DetectionDataConfig, log=print) -> DetectionSet:
    """The annotated images of ``cfg.path``; skipped annotations are counted in the log."""
    from training.data.coco import read_coco
    from training.data.vstar import vstar_detections

    kind, source = detection_source(Path(cfg.path))
    kind = kind if cfg.format == "auto" else cfg.format
    data = vstar_detections(source) if kind == "vstar" else read_coco(source, cfg.image_root or None)
    n = sum(len(im.instances) for im in data.images)
    log(f"{source}: {len(data.images)} images, {n} annotations, {len(data.names)} names"
        + (f"; skipped {data.skipped} crowd annotations" if data.skipped else ""))
    if n == 0:
        raise InputError("no annotations to train on (every image is empty)", source)
    return data
