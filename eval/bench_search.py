"""``seal bench search``: how fast each expansion strategy finds V*Bench targets with the oracle.

For every (sample, target name) of a V*Bench-layout folder (the first ``n_targets`` in sorted
order, :func:`eval.bench_targets.list_targets`) and every strategy, runs
:func:`search.engine.run_search` with an :class:`~search.oracle.OracleLocalizer` built from the
sample's annotation and reports per strategy:

- ``found_rate``: found and IoU >= 0.5 with a ground-truth box of that name (the reference's
  search accuracy); ``confident_hit_rate``: the same, restricted to searches whose box was a
  confident detection (``fallback`` false), i.e. without the anytime fallback;
- ``mean_nodes_all`` (over ALL targets: the true search length) and ``mean_nodes_found`` (over the
  found ones, the number the reference reported);
- ``mean_model_calls`` and ``engine_ms_per_node`` = sum(seconds - localizer_seconds) / sum(nodes).

The big-image run (:func:`run_big`) instead writes a 16384 x 16384 JPEG with a few small targets,
searches it with ``python -m seal search`` in a subprocess and reports that subprocess's peak RSS
next to the image's ``uint8`` size (``W * H * 3`` bytes).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from eval.bench_targets import BenchTarget, list_targets, search_row
from seal.core.errors import InputError

STRATEGIES = ("vstar", "bfs", "dfs", "random-bfs", "random-dfs")


def run_bench_search(cfg: Any, bench: Path, n_targets: int = 100, strategies: tuple[str, ...] = STRATEGIES,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """The report of the module docstring for the first ``n_targets`` pairs of ``bench``; ``cfg``:
    a config with ``image``, ``search`` and ``oracle`` sections and the run's ``seed``. Prints the
    table with ``log``.

    Raises:
        InputError: an unknown strategy, or ``bench`` is not a V*Bench-layout folder.
    """
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown or not strategies:
        raise InputError(f"--strategies: expected a comma-separated subset of {','.join(STRATEGIES)}, "
                         f"found {','.join(strategies) or 'none'}")
    report = run_bench(list_targets(bench)[: max(n_targets, 0)], cfg, strategies)
    log(format_table(report))
    return report


def run_bench(targets: list[BenchTarget], cfg: Any, strategies: tuple[str, ...] = STRATEGIES) -> dict[str, Any]:
    """Search every target with every strategy; per-strategy metrics and per-target rows."""
    from search.engine import run_search
    from seal.core.image_source import ImageSource
    from search.oracle import OracleLocalizer

    rows: list[dict[str, Any]] = []
    cache: tuple[Path, Any, Any] | None = None
    for t in targets:
        if cache is None or cache[0] != t.annotation:
            image = ImageSource.from_path(t.image, cfg.image.max_pixels)
            cache = (t.annotation, image, OracleLocalizer.from_annotation(t.annotation, cfg.oracle, cfg.seed))
        _, image, oracle = cache
        for strategy in strategies:
            result = run_search(oracle, image, t.name, replace(cfg.search, strategy=strategy), seed=cfg.seed)
            rows.append(search_row(t, strategy, result))
    return {"strategies": {s: summarize([r for r in rows if r["strategy"] == s]) for s in strategies},
            "n_targets": len(targets), "rows": rows}


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    hits = [r for r in rows if r["hit"]]
    nodes = sum(r["nodes_visited"] for r in rows)
    engine_s = sum(r["seconds"] - r["localizer_seconds"] for r in rows)
    n = max(len(rows), 1)
    return {
        "n": len(rows),
        "found_rate": len(hits) / n,
        "confident_hit_rate": sum(not r["fallback"] for r in hits) / n,
        "mean_nodes_all": nodes / n,
        "mean_nodes_found": (sum(r["nodes_visited"] for r in hits) / len(hits)) if hits else float("nan"),
        "mean_model_calls": sum(r["model_calls"] for r in rows) / n,
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


# --------------------------------------------------------------------------- the big image
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


def run_big(side: int, extra_args: list[str], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the big image in a temporary folder, search it with ``python -m seal search
    *extra_args`` in a subprocess; ``{"big": ...}``: its peak RSS and the results. Prints one line
    with ``log``."""
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
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise InputError(f"the big-image search subprocess failed (exit {proc.returncode}): {last}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
    b = {"side": side, "image_uint8_mb": side * side * 3 / 2**20, "child_peak_rss_mb": peak_kb / 1024,
         "write_seconds": write_s, "child_wall_seconds": wall, "found": result["found"],
         "nodes_visited": result["nodes_visited"], "model_calls": result["model_calls"],
         "search_seconds": result["seconds"], "results": result.get("results", [result])}
    log(f"{b['side']}x{b['side']} JPEG: uint8 image {b['image_uint8_mb']:.0f} MB, search subprocess peak RSS "
        f"{b['child_peak_rss_mb']:.0f} MB; found all: {b['found']}, {b['nodes_visited']} nodes, "
        f"{b['search_seconds']:.2f} s search, {b['child_wall_seconds']:.1f} s wall")
    return {"big": b}


def write_report(out: Path, report: dict[str, Any]) -> None:
    """The report as indented JSON (numpy scalars as floats)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")
