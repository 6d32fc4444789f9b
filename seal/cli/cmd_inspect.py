"""``seal inspect``: look at what a method does to one image. ``seal inspect patches`` draws the
entropy-based patch selection (seed 003, :mod:`vwm.entropy`).

``seal inspect patches --image PATH --out PNG [--mode v1|v2|budget] [--alpha A] [--patch P]
[--max-side S] [--bins B] [--thresholds T2 T3] [--json]``

The image is resized so that it fits in ``--max-side`` px and each side is a whole number of ``L3``
patches (``4 * --patch`` px); its entropy map of ``--patch`` px cells goes through the cascade. The PNG
is that resized image with every kept patch tinted and outlined in its level's colour (``L1`` red,
``L2`` amber, ``L3`` blue); a ``.json`` beside it records the sizes, the settings, the budget
statistics (:class:`vwm.entropy.BudgetStats`) and every kept patch as ``[level, x0, y0, x1, y1]`` in
the resized image's pixels. One summary line is printed (``--json``: the record as one JSON object on
the last stdout line). Exit codes: 0 written; 2 a missing or unreadable image, ``--alpha <= 0``, an
output that is not a ``.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seal.cli.common import print_json_line
from seal.core.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="look at what a method does to one image (inspect patches: entropy "
                                       "patch selection drawn over the image)")
    actions = p.add_subparsers(dest="inspect_command", metavar="ACTION")
    actions.required = True
    s = actions.add_parser("patches", help="draw the entropy-based patch selection (seed 003) over an image")
    s.add_argument("--image", required=True, type=Path, help="the image file")
    s.add_argument("--out", required=True, type=Path, metavar="PNG", help="the picture to write (a .json beside it)")
    s.add_argument("--mode", choices=("v1", "v2", "budget"), default="budget",
                   help="v1 fixed thresholds, v2 alpha x mean entropy, budget about alpha of the cells (default)")
    s.add_argument("--alpha", type=float, default=None,
                   help="budget: share of the smallest cells kept as tokens (0 < A <= 1); v2: threshold multiple "
                        "of the mean entropy (default: vwm.entropy.EntropyConfig's)")
    s.add_argument("--patch", type=int, default=14, help="side of the smallest patch in px (default 14)")
    s.add_argument("--max-side", type=int, default=448, help="long side the image is fitted into (default 448)")
    s.add_argument("--bins", type=int, default=None, help="grey-level histogram bins (default 256)")
    s.add_argument("--thresholds", type=float, nargs=2, default=None, metavar=("T2", "T3"),
                   help="v1: entropy (bits) under which an L2 / an L3 patch stays whole")
    s.add_argument("--json", action="store_true", help="print the record as one JSON object")
    s.set_defaults(func=run_patches)


def run_patches(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from seal.core.image_io import load_image
    from vwm.entropy import EntropyConfig, analysis_size, draw_selection, select_image_patches

    if args.overrides:
        raise InputError(f"seal inspect patches takes no config overrides, found {args.overrides[0]!r}")
    if args.alpha is not None and not args.alpha > 0:
        raise InputError(f"--alpha: expected > 0, found {args.alpha}")
    if args.patch < 1 or args.max_side < 4 * args.patch:
        raise InputError(f"--patch / --max-side: expected patch >= 1 and max-side >= 4 x patch, found "
                         f"{args.patch} / {args.max_side}")
    if args.out.suffix.lower() != ".png":
        raise InputError(f"--out: expected a .png file, found {args.out}")
    settings = {"mode": args.mode, "alpha": args.alpha, "bins": args.bins,
                "thresholds": None if args.thresholds is None else tuple(args.thresholds)}
    cfg = EntropyConfig(**{k: v for k, v in settings.items() if v is not None})
    image = load_image(args.image)
    size = analysis_size(*image.size, args.patch, args.max_side)
    rgb = np.asarray(image.resize(size, Image.Resampling.BICUBIC) if size != image.size else image)
    selection = select_image_patches(rgb, args.patch, cfg)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(draw_selection(rgb, selection, args.patch)).save(args.out)
    stats = selection.stats
    record = {"image": str(args.image), "out": str(args.out), "image_size": list(image.size),
              "analysis_size": list(size), "patch": args.patch, "grid": list(selection.l1.shape),
              "config": {"mode": cfg.mode, "alpha": cfg.alpha, "thresholds": list(cfg.thresholds), "bins": cfg.bins},
              "stats": stats.to_dict(), "patches": [list(b) for b in selection.boxes(args.patch)]}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    if args.json:
        print_json_line(record)
    else:
        budget = "" if stats.budget is None else f", budget {stats.budget} (alpha {stats.alpha}, k {stats.k} splits)"
        print(f"{args.image}: kept {stats.kept_tokens} of {stats.base_small_tokens} tokens "
              f"({100 * stats.kept_share:.1f}%; L3 {stats.kept_per_level['L3']}, L2 {stats.kept_per_level['L2']}, "
              f"L1 {stats.kept_per_level['L1']}; base {stats.base_tokens}{budget}) -> {args.out}", flush=True)
    return 0
