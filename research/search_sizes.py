"""The search model on a V*Bench folder, per target size: found, nodes, patches, calls, forwards.

How each search setting moves the figures (issue 29): run it once per set of ``--section.field=value``
overrides of the model's search profile, on a val split.

    python -m research.search_sizes --bench runs/i29_val_mixed --out runs/i29/val_base.json
    python -m research.search_sizes --bench runs/i29_val_mixed --out runs/i29/val_jump.json \\
        --search.jump_levels=1

Prints one line for all targets and one per size class (small < 5% of the image's long side <=
large at 10%); writes every target's row (``seal bench vsm``'s rows, :func:`eval.bench_vsm.run_bench`)
to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from eval.bench_targets import list_targets
    from eval.bench_vsm import SIZE_CLASSES, run_bench
    from seal.cli.cmd_search import LOCALIZERS, load_hit_check
    from seal.config import SearchCommandConfig, load

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, default=200, help="first N targets")
    p.add_argument("--strategy", default="vstar")
    args, overrides = p.parse_known_args()
    torch.set_num_threads(1)
    cfg = load(overrides=["models.localizer=vsm"] + [o.lstrip("-") for o in overrides], cls=SearchCommandConfig)
    localizer = LOCALIZERS["vsm"](argparse.Namespace(config=[], overrides=[], model=None), cfg)
    started = time.perf_counter()
    rows = run_bench(localizer, list_targets(args.bench)[:args.n], cfg, timing_calls=0, log=lambda m: None,
                     hit_check=load_hit_check(cfg, localizer), strategies=(args.strategy,),
                     patch_calibration=False)["rows"]
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
