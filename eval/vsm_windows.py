"""Recognition without navigation: does a localizer pick the target in a leaf-sized window, and does
that window outscore windows without it? Measured on a TEST-split V*Bench-layout folder:

    python -m eval.vsm_windows --model checkpoints/vsm_tiny --bench runs/synth_test80 --n-targets 40

For each (sample, target name) (``eval.bench_search.list_targets`` order), one *present* window (a
square of ``--zoom`` x the image's search leaf side, shifted at random but holding the first
instance) and ``--absent`` windows of the same size holding no instance of that name:

- ``top1``: the present window's best box has IoU >= 0.5 with an instance (recognition);
- ``auc``: present windows' best scores ranked above absent ones' (0.5 = blind, 1 = perfect);
- ``wins``: the present window outscores every absent window of its own image;
- ``fires_present`` / ``fires_absent``: best score above ``search.confidence_high``.

The search needs all of them: ``top1`` says the model can see the target up close, ``auc`` /
``wins`` / the firing rates say whether its score can be compared across the patches a search visits.
Prints one JSON line; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seal.cli.common import add_config_args, parse_with_config
from seal.errors import InputError

Box = tuple[float, float, float, float]


def windows_for(boxes: np.ndarray, width: int, height: int, side: float, absent: int,
                rng: np.random.Generator, tries: int = 200) -> list[Box]:
    """``[present, absent_1, ...]``: the present window holds ``boxes[0]`` whole (shifted by up to
    30% of the side); the absent ones (fewer when the image has no room) overlap no box."""
    from search.geometry import iou_xyxy, square_window_xyxy

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


def measure(localizer: Any, targets: Sequence, search_cfg: Any, zoom: float = 1.25, absent: int = 3,
            seed: int = 0, max_pixels: int = 40_000_000) -> dict[str, Any]:
    """The report of the module docstring for ``localizer`` (any :class:`search.localizer.Localizer`)."""
    from search.geometry import iou_xyxy
    from search.image_source import ImageSource
    from search.tree import leaf_side

    rng = np.random.default_rng(seed)
    present, absent_scores, top1, wins = [], [], [], []
    current = None
    for t in targets:
        if current is None or current[0] != t.image:
            current = (t.image, ImageSource.from_path(t.image, max_pixels))
            localizer.set_image(current[1])
        image = current[1]
        side = zoom * leaf_side(image.width, image.height, search_cfg)
        regions = windows_for(np.asarray(t.boxes_xyxy, dtype=np.float64), image.width, image.height, side, absent, rng)
        dets = localizer.locate(t.name, regions)
        best = dets[0].best_box
        top1.append(best is not None and max(iou_xyxy(best, tuple(g)) for g in t.boxes_xyxy) >= 0.5)
        present.append(dets[0].best_score)
        others = [d.best_score for d in dets[1:]]
        absent_scores += others
        wins.append(all(present[-1] > o for o in others))
    if not present:
        raise InputError("no targets to measure")
    p, a = np.array(present), np.array(absent_scores)
    auc = float((p[:, None] > a[None, :]).mean() + 0.5 * (p[:, None] == a[None, :]).mean()) if len(a) else float("nan")
    high = search_cfg.confidence_high
    return {"targets": len(p), "absent_windows": len(a), "zoom": zoom, "top1": round(float(np.mean(top1)), 4),
            "auc": round(auc, 4), "wins": round(float(np.mean(wins)), 4),
            "fires_present": round(float((p > high).mean()), 4),
            "fires_absent": round(float((a > high).mean()), 4) if len(a) else float("nan"),
            "mean_score_present": round(float(p.mean()), 4),
            "mean_score_absent": round(float(a.mean()), 4) if len(a) else float("nan")}


def main(argv: list[str] | None = None) -> int:
    import torch

    from eval.bench_search import list_targets
    from search.vsm.localizer import load_vsm_localizer

    p = argparse.ArgumentParser(prog="python -m eval.vsm_windows", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path("checkpoints/vsm_tiny"), help="VSM checkpoint directory")
    p.add_argument("--bench", type=Path, required=True, help="TEST-split V*Bench-layout folder")
    p.add_argument("--n-targets", type=int, default=40, help="first N (sample, target) pairs")
    p.add_argument("--zoom", type=float, default=1.25, help="window side in search leaf sides")
    p.add_argument("--absent", type=int, default=3, help="absent windows per target")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--out", type=Path, help="also write the JSON report here")
    add_config_args(p)
    try:
        args, cfg = parse_with_config(p, argv)
        torch.set_num_threads(args.threads)
        if not 0.25 <= args.zoom <= 8 or args.absent < 0:
            raise InputError(f"--zoom: expected 0.25..8, --absent: >= 0; found {args.zoom} / {args.absent}")
        targets = list_targets(args.bench)[: max(args.n_targets, 0)]
        report = measure(load_vsm_localizer(args.model), targets, cfg.search, args.zoom, args.absent, args.seed,
                         cfg.image.max_pixels)
    except InputError as exc:
        print(f"vsm_windows: error: {exc}", file=sys.stderr)
        return 2
    report = {"model": str(args.model), "bench": str(args.bench), **report}
    line = json.dumps(report)
    print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
