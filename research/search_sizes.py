"""The search model on a V*Bench folder, per target size: found, nodes, patches, calls, forwards.

How each search setting moves the figures (issue 29): run it once per set of ``--section.field=value``
overrides of the model's search profile, on a val split.

    python -m research.search_sizes --bench runs/i29_val_mixed --out runs/i29/val_base.json
    python -m research.search_sizes --bench runs/i29_val_mixed --out runs/i29/val_jump.json \\
        --search.jump_levels=1

Prints one line for all targets and one per size class (small < 5% of the image's long side <=
large at 10%); writes every target's row (``seal bench vsm``'s fields plus ``size`` and the levels
visited) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from eval.bench_targets import list_targets, search_row
    from eval.bench_vsm import SIZE_CLASSES, target_size
    from seal.cli.cmd_search import LOCALIZERS, load_hit_check
    from seal.config import SearchCommandConfig, load
    from seal.core.image_source import ImageSource
    from search.session import SearchSession

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=200, help="first N targets")
    p.add_argument("--strategy", default="vstar")
    args, overrides = p.parse_known_args()
    torch.set_num_threads(1)
    cfg = load(overrides=["models.localizer=vsm"] + [o.lstrip("-") for o in overrides], cls=SearchCommandConfig)
    ns = argparse.Namespace(config=[], overrides=[], model=None)
    localizer = LOCALIZERS["vsm"](ns, cfg)
    check = load_hit_check(cfg, localizer)
    by_image: dict[Path, list] = {}
    for t in list_targets(args.bench)[:args.n]:
        by_image.setdefault(t.image, []).append(t)
    rows, started = [], time.perf_counter()
    for path, group in by_image.items():
        image = ImageSource.from_path(path, cfg.image.max_pixels)
        session = SearchSession(localizer, image, cfg.search, check, cfg.hit_check, cfg.seed)
        for t in group:
            result = session.search(t.name, cfg=replace(cfg.search, strategy=args.strategy))
            graph = result.trace.graph
            visited = sorted((a["visit_order"], a["level"]) for a in graph.nodes.values() if a["visit_order"] > 0)
            rows.append({**search_row(t, args.strategy, result), "size": target_size(t, image),
                         "levels_visited": [lvl for _, lvl in visited]})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, default=float) + "\n", encoding="utf-8")
    print(f"{len(rows)} targets in {time.perf_counter() - started:.0f} s -> {args.out}")
    classes = {"all": (0.0, float("inf")), **SIZE_CLASSES}
    for name, (lo, hi) in classes.items():
        part = [r for r in rows if lo <= r["size"] < hi]
        if part:
            mean = {k: float(np.mean([r[k] for r in part])) for k in
                    ("hit", "nodes_visited", "nodes_scored", "model_calls", "forwards")}
            print(f"{name:<7} n={len(part):<4} found {mean['hit']:.3f}  nodes {mean['nodes_visited']:.1f}  patches "
                  f"{mean['nodes_scored']:.1f}  calls {mean['model_calls']:.1f}  forwards {mean['forwards']:.1f}")


if __name__ == "__main__":
    main()
