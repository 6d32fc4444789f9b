"""Search-only benchmark: how fast each expansion strategy finds V*Bench targets with the oracle.

``python -m eval.bench_search --bench DIR [--n-targets 100] [--out OUT.json] [--config YAML ...]
[--search.field=value ...]``

For every (sample, target name) of a V*Bench-layout folder (the first ``--n-targets`` in sorted
order) and every strategy, runs :func:`search.engine.run_search` with an
:class:`~search.oracle.OracleLocalizer` built from the sample's annotation and reports per strategy:

- ``found_rate``: found and IoU >= 0.5 with a ground-truth box of that name (the reference's
  search accuracy); ``confident_hit_rate``: the same, restricted to searches whose box was a
  confident detection (``fallback`` false), i.e. without the anytime fallback;
- ``mean_nodes_all`` (over ALL targets: the true search length) and ``mean_nodes_found`` (over the
  found ones, the number the reference reported);
- ``mean_model_calls`` and ``engine_ms_per_node`` = sum(seconds - localizer_seconds) / sum(nodes).

``--big`` instead writes a 16384 x 16384 JPEG with a few small targets, searches it with
``python -m seal search`` in a subprocess and reports that subprocess's peak RSS next to the
image's ``uint8`` size (``W * H * 3`` bytes).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from seal.cli.common import add_config_args, parse_with_config
from seal.core.runs import write_run_record
from seal.core.errors import InputError

STRATEGIES = ("vstar", "bfs", "dfs", "random-bfs", "random-dfs")


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


def run_bench(targets: list[BenchTarget], cfg: Any, strategies: tuple[str, ...] = STRATEGIES) -> dict[str, Any]:
    """Search every target with every strategy; per-strategy metrics and per-target rows."""
    from search.engine import run_search
    from seal.core.geometry import iou_xyxy
    from seal.core.image_source import ImageSource
    from search.oracle import OracleLocalizer

    rows: list[dict[str, Any]] = []
    cache: tuple[Path, Any, Any] | None = None
    for t in targets:
        if cache is None or cache[0] != t.annotation:
            image = ImageSource.from_path(t.image, cfg.image.max_pixels)
            cache = (t.annotation, image, OracleLocalizer.from_annotation(t.annotation, cfg.oracle))
        _, image, oracle = cache
        for strategy in strategies:
            result = run_search(oracle, image, t.name, replace(cfg.search, strategy=strategy))
            iou = float(iou_xyxy(result.box_xyxy, t.boxes_xyxy).max()) if result.box_xyxy else 0.0
            rows.append({"sample": str(t.annotation), "target": t.name, "strategy": strategy, "iou": iou,
                         "hit": bool(result.found and iou >= 0.5), **result.to_json()})
    return {"strategies": {s: summarize([r for r in rows if r["strategy"] == s]) for s in strategies},
            "n_targets": len(targets), "rows": rows}


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    hits = [r for r in rows if r["hit"]]
    nodes = sum(r["nodes_visited"] for r in rows)
    engine_s = sum(r["seconds"] - r["localizer_seconds"] for r in rows)
    return {
        "n": len(rows),
        "found_rate": len(hits) / len(rows),
        "confident_hit_rate": sum(not r["fallback"] for r in hits) / len(rows),
        "mean_nodes_all": nodes / len(rows),
        "mean_nodes_found": (sum(r["nodes_visited"] for r in hits) / len(hits)) if hits else float("nan"),
        "mean_model_calls": sum(r["model_calls"] for r in rows) / len(rows),
        "engine_ms_per_node": 1000 * engine_s / max(nodes, 1),
    }


def format_table(report: dict[str, Any]) -> str:
    head = (f"{'strategy':<11} {'found':>6} {'conf':>6} {'nodes(all)':>10} {'nodes(found)':>12} "
            f"{'calls':>7} {'ms/node':>8}")
    lines = [f"{report['n_targets']} targets", head, "-" * len(head)]
    for name, m in report["strategies"].items():
        lines.append(f"{name:<11} {m['found_rate']:>6.1%} {m['confident_hit_rate']:>6.1%} {m['mean_nodes_all']:>10.2f} "
                     f"{m['mean_nodes_found']:>12.2f} {m['mean_model_calls']:>7.2f} {m['engine_ms_per_node']:>8.3f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- --big
def write_big_image(folder: Path, side: int = 16384, tile: int = 2048, seed: int = 0) -> tuple[Path, Path]:
    """A ``side x side`` JPEG with three 320 px targets + its V*Bench JSON. Returns (image, json).

    The background is made tile by tile as ``uint8`` (no full-size float array); the only full-size
    buffer is the ``uint8`` PIL image (``side**2 * 3`` bytes) needed by the JPEG encoder.
    """
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (side, side))
    for y in range(0, side, tile):
        for x in range(0, side, tile):
            base = rng.integers(60, 160, 3, dtype=np.uint8)
            block = np.broadcast_to(base, (tile, tile, 3)) + rng.integers(0, 24, (tile, tile, 1), dtype=np.uint8)
            img.paste(Image.fromarray(block), (x, y))
    targets = [("red disc", (0.71, 0.83), (230, 20, 20)), ("blue square", (0.12, 0.40), (20, 40, 230)),
               ("yellow disc", (0.55, 0.07), (240, 220, 10))]
    draw = ImageDraw.Draw(img)
    names, boxes = [], []
    for name, (fx, fy), colour in targets:
        x, y, s = int(fx * side), int(fy * side), 320
        (draw.ellipse if "disc" in name else draw.rectangle)([x, y, x + s, y + s], fill=colour)
        names.append(name)
        boxes.append([x, y, s, s])
    image_path, json_path = folder / "big.jpg", folder / "big.json"
    img.save(image_path, quality=85)
    del img, draw
    json_path.write_text(json.dumps({"target_object": names, "bbox": boxes, "question": "", "options": []}))
    return image_path, json_path


def run_big(side: int, extra_args: list[str]) -> dict[str, Any]:
    """Write the big image here, search it in a subprocess, return its peak RSS and the results."""
    with tempfile.TemporaryDirectory(prefix="seal_big_") as tmp:
        t0 = time.perf_counter()
        image, annotation = write_big_image(Path(tmp), side)
        write_s = time.perf_counter() - t0
        cmd = [sys.executable, "-m", "seal", "search", "--image", str(image), "--annotation", str(annotation),
               "--json", "--quiet", *extra_args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"big-image search failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    return {"side": side, "image_uint8_mb": side * side * 3 / 2**20, "child_peak_rss_mb": peak_kb / 1024,
            "write_seconds": write_s, "child_wall_seconds": wall, "found": result["found"],
            "nodes_visited": result["nodes_visited"], "model_calls": result["model_calls"],
            "search_seconds": result["seconds"], "results": result.get("results", [result])}


def main(argv: list[str] | None = None) -> int:

    p = argparse.ArgumentParser(prog="python -m eval.bench_search", description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, help="V*Bench-layout folder (direct_attributes/, relative_position/, ...)")
    p.add_argument("--n-targets", type=int, default=100, help="first N (sample, target) pairs, sorted")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help="comma-separated subset of " + ",".join(STRATEGIES))
    p.add_argument("--out", type=Path, help="write the report JSON here (+ config.yaml / run.json beside it)")
    p.add_argument("--big", action="store_true", help="peak-memory run on a generated 16384 px image instead")
    p.add_argument("--big-side", type=int, default=16384)
    p.add_argument("--localizer", choices=("oracle", "vsm"), default="oracle",
                   help="--big: the localizer of the searched subprocess (vsm = the shipped search model)")
    add_config_args(p)
    try:
        args, cfg = parse_with_config(p, argv, profile=False)  # the oracle: no search model's profile
        if args.big:
            passthrough = [f"--config={c}" for c in args.config] + [f"--{o}" for o in args.overrides] + \
                ["--localizer", args.localizer]
            report: dict[str, Any] = {"big": run_big(args.big_side, passthrough)}
            b = report["big"]
            print(f"{b['side']}x{b['side']} JPEG: uint8 image {b['image_uint8_mb']:.0f} MB, search subprocess peak RSS "
                  f"{b['child_peak_rss_mb']:.0f} MB; found all: {b['found']}, {b['nodes_visited']} nodes, "
                  f"{b['search_seconds']:.2f} s search, {b['child_wall_seconds']:.1f} s wall")
        else:
            if args.bench is None:
                p.error("--bench DIR is required (or --big)")
            strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
            unknown = sorted(set(strategies) - set(STRATEGIES))
            if unknown:
                p.error(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
            targets = list_targets(args.bench)[: max(args.n_targets, 0)]
            report = run_bench(targets, cfg, strategies)
            print(format_table(report))
    except InputError as exc:
        print(f"bench_search: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")
        write_run_record(args.out.parent, cfg)
        print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
