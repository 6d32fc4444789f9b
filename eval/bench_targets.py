"""The (sample, target name) pairs of a V*Bench-layout folder, the unit every search benchmark counts.

``seal bench search`` and ``seal bench vsm`` search each pair once per strategy; the research
diagnostics (``research/``) measure the same pairs in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class BenchTarget:
    """One (sample, target name) pair; ``boxes_xyxy`` are all its ground-truth instances."""

    image: Path
    annotation: Path
    name: str
    boxes_xyxy: np.ndarray  # (N, 4) float64, full-image px


def list_targets(bench: Path) -> list[BenchTarget]:
    """Every (sample, distinct target name) of the benchmark, in the reader's deterministic order.

    Repeated names of one sample (several instances) are one target; a hit is IoU >= 0.5 with any
    of its instances.

    Raises:
        InputError: ``bench`` is not a readable V*Bench-layout folder.
    """
    from eval.readers.vstar import read_vstar_folder
    from search.oracle import normalize_name

    out = []
    for sample in read_vstar_folder(bench):
        boxes = sample.boxes_xyxy()  # (N, 4), one per name in sample.targets
        names = [normalize_name(t) for t in sample.targets]
        for name in dict.fromkeys(names):
            group = boxes[[i for i, n in enumerate(names) if n == name]]
            out.append(BenchTarget(sample.image, sample.source, name, group))
    return out


def search_row(target: BenchTarget, strategy: str, result) -> dict:
    """One report row: the target, the strategy, the IoU of the returned box with the nearest
    ground-truth instance, ``hit`` (found and IoU >= 0.5) and every :class:`SearchResult` field."""
    from seal.core.geometry import iou_xyxy

    iou = float(iou_xyxy(result.box_xyxy, target.boxes_xyxy).max()) if result.box_xyxy else 0.0
    return {"sample": str(target.annotation), "target": target.name, "strategy": strategy, "iou": iou,
            "hit": bool(result.found and iou >= 0.5), **result.to_json()}
