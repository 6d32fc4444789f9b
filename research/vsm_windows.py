"""Recognition without navigation: does a localizer pick the target in a leaf-sized window, and does
that window outscore windows without it? Measured on a TEST-split V*Bench-layout folder:

    python -m research.vsm_windows --model checkpoints/vsm_tiny --bench runs/synth_test80 --n-targets 40

For each (sample, target name) (``eval.bench_targets.list_targets`` order), one *present* window (a
square of ``--zoom`` x the image's search leaf side, shifted at random but holding the first
instance) and ``--absent`` windows of the same size holding no instance of that name:

- ``top1``: the present window's best box has IoU >= 0.5 with an instance (recognition);
- ``auc``: present windows' best scores ranked above absent ones' (0.5 = blind, 1 = perfect);
- ``wins``: the present window outscores every absent window of its own image;
- ``fires_present`` / ``fires_absent``: best score above ``search.confidence_high``;
- with a SynthVStar sidecar (``synth_annotations/``), one more window per *near miss* of the target
  (an object whose name differs in one attribute, e.g. a "dotted ring" for "striped ring"), centred
  on it and holding no instance of the target: ``auc_near``, ``wins_near`` (the present window
  outscores all of its target's near-miss windows) and ``fires_near``. These are the windows a
  search stops on wrongly;
- ``by_name_kind``: the same report for the targets named by colour ("red star") and by pattern
  ("dotted star") apart, when every target has a SynthVStar name.

The search needs all of them: ``top1`` says the model can see the target up close, ``auc`` /
``wins`` / the firing rates say whether its score can be compared across the patches a search visits.
Prints one JSON line; ``--out`` also writes it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from research.cli import input_error, parse_search_model_args, target_parser, write_report
from seal.core.errors import InputError

Box = tuple[float, float, float, float]


def windows_for(boxes: np.ndarray, width: int, height: int, side: float, absent: int,
                rng: np.random.Generator, tries: int = 200) -> list[Box]:
    """``[present, absent_1, ...]``: the present window holds ``boxes[0]`` whole (shifted by up to
    30% of the side); the absent ones (fewer when the image has no room) overlap no box."""
    from seal.core.geometry import iou_xyxy, square_window_xyxy

    x1, y1, x2, y2 = (float(v) for v in boxes[0])
    slack = max(0.0, 0.3 * side - max(x2 - x1, y2 - y1) / 2)
    dx, dy = rng.uniform(-slack, slack, 2)
    present = square_window_xyxy((x1 + x2) / 2 + dx, (y1 + y2) / 2 + dy, side, width, height)
    out = [present]
    for _ in range(tries):
        if len(out) > absent:
            break
        w = square_window_xyxy(rng.uniform(0, width), rng.uniform(0, height), side, width, height)
        if not (iou_xyxy(w, boxes) > 0).any():
            out.append(w)
    return out


def near_misses(annotation: Path, name: str) -> tuple[dict | None, list[dict]]:
    """``(target, near_misses)``: the SynthVStar sidecar objects of target ``name`` and of its near
    misses (objects whose attributes differ from the target's in exactly one of the attributes its
    name uses); ``(None, [])`` without a sidecar or a target of that name."""
    from eval.synth.scene import ATTRS, is_near_miss
    from search.oracle import normalize_name, sidecar_path

    path = sidecar_path(annotation)
    if not path.is_file():
        return None, []
    try:
        objects = json.loads(path.read_text(encoding="utf-8"))["objects"]
        truth = [o for o in objects if o["role"] == "target" and normalize_name(o["name"]) == name]
        if not truth:
            return None, []
        keys = tuple(k for k in ATTRS if truth[0][k] in name.split())
        return truth[0], [o for o in objects if o["role"] == "near_miss" and is_near_miss(o, truth[0], keys)]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"malformed SynthVStar sidecar ({exc})", path) from exc


def near_miss_boxes(annotation: Path, name: str) -> np.ndarray:
    """``(M, 4)`` full-image ``xyxy`` boxes of :func:`near_misses`; (0, 4) when there are none."""
    from seal.core.geometry import xywh_to_xyxy

    return np.asarray([xywh_to_xyxy(o["bbox"]) for o in near_misses(annotation, name)[1]],
                      dtype=np.float64).reshape(-1, 4)


@dataclass
class TargetWindows:
    """Scores of one target's windows: the present one, the absent ones, the near-miss ones."""

    kind: str | None  # SynthVStar name kind (eval.synth.vocab.name_kind)
    top1: bool
    present: float
    absent: list[float]
    near: list[float]


def measure(localizer: Any, targets: Sequence, search_cfg: Any, zoom: float = 1.25, absent: int = 3,
            seed: int = 0, max_pixels: int = 40_000_000) -> dict[str, Any]:
    """The report of the module docstring for ``localizer`` (any :class:`search.localizer.Localizer`)."""
    from eval.synth.vocab import name_kind
    from seal.core.geometry import iou_xyxy, square_window_xyxy
    from seal.core.image_source import ImageSource
    from search.tree import leaf_side

    rng = np.random.default_rng(seed)
    records: list[TargetWindows] = []
    current = None
    for t in targets:
        if current is None or current[0] != t.image:
            current = (t.image, ImageSource.from_path(t.image, max_pixels))
            localizer.set_image(current[1])
        image = current[1]
        side = zoom * leaf_side(image.width, image.height, search_cfg)
        truth = np.asarray(t.boxes_xyxy, dtype=np.float64)
        regions = windows_for(truth, image.width, image.height, side, absent, rng)
        near = [w for w in (square_window_xyxy((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, side, image.width, image.height)
                            for b in near_miss_boxes(t.annotation, t.name)) if not (iou_xyxy(w, truth) > 0).any()]
        dets = localizer.locate(t.name, regions + near)
        best = dets[0].best_box
        scores = [d.best_score for d in dets]
        records.append(TargetWindows(
            name_kind(t.name), best is not None and max(iou_xyxy(best, tuple(g)) for g in t.boxes_xyxy) >= 0.5,
            scores[0], scores[1:len(regions)], scores[len(regions):]))
    if not records:
        raise InputError("no targets to measure")
    report = {**summarize(records, search_cfg.confidence_high), "zoom": zoom}
    kinds = {r.kind for r in records}
    if None not in kinds and len(kinds) > 1:
        report["by_name_kind"] = {k: summarize([r for r in records if r.kind == k], search_cfg.confidence_high)
                                  for k in sorted(kinds)}  # type: ignore[type-var]
    return report


def summarize(records: Sequence[TargetWindows], high: float) -> dict[str, Any]:
    """The module docstring's figures over ``records``; ``high``: the firing threshold."""
    p = np.array([r.present for r in records])
    a = np.array([s for r in records for s in r.absent])
    n = np.array([s for r in records for s in r.near])
    out = {"targets": len(p), "absent_windows": len(a), "top1": round(float(np.mean([r.top1 for r in records])), 4),
           "auc": round(_auc(p, a), 4), "wins": round(float(np.mean([all(r.present > o for o in r.absent)
                                                                      for r in records])), 4),
           "fires_present": round(float((p > high).mean()), 4),
           "fires_absent": round(float((a > high).mean()), 4) if len(a) else float("nan"),
           "mean_score_present": round(float(p.mean()), 4),
           "mean_score_absent": round(float(a.mean()), 4) if len(a) else float("nan")}
    if len(n):
        out.update({"near_windows": len(n), "auc_near": round(_auc(p, n), 4),
                    "wins_near": round(float(np.mean([all(s < r.present for s in r.near)
                                                      for r in records if r.near])), 4),
                    "fires_near": round(float((n > high).mean()), 4), "mean_score_near": round(float(n.mean()), 4)})
    return out


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive outscores a negative), ties counted half; nan without negatives."""
    if not len(neg):
        return float("nan")
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def main(argv: list[str] | None = None) -> int:
    import torch

    from eval.bench_targets import list_targets
    from seal.cli.cmd_search import LOCALIZERS

    p = target_parser("vsm_windows", __doc__, "checkpoints/vsm_tiny", "VSM checkpoint directory", n_targets=40,
                      threads=2)
    p.add_argument("--zoom", type=float, default=1.25, help="window side in search leaf sides")
    p.add_argument("--absent", type=int, default=3, help="absent windows per target")
    p.add_argument("--seed", type=int, default=0)
    try:
        args, cfg = parse_search_model_args(p, argv)
        torch.set_num_threads(args.threads)
        if not 0.25 <= args.zoom <= 8 or args.absent < 0:
            raise InputError(f"--zoom: expected 0.25..8, --absent: >= 0; found {args.zoom} / {args.absent}")
        targets = list_targets(args.bench)[: max(args.n_targets, 0)]
        report = measure(LOCALIZERS["vsm"](args, cfg), targets, cfg.search, args.zoom, args.absent, args.seed,
                         cfg.image.max_pixels)
    except InputError as exc:
        return input_error("vsm_windows", exc)
    print(write_report(args.out, {"model": str(args.model), "bench": str(args.bench), **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
