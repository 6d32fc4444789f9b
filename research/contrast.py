"""The contrast check: the search model checks its own hit against the target's one-word variants.

An experiment, not a product feature: with the tiny search model it did not pay (research/README.md).

A near miss differs from the target in one word ("checkered circle" for "checkered hexagon"). The
localizer is asked again, on one window around the box, under the target's name and under every
variant with one word of a contrasted kind swapped ("checkered star", "checkered ring", ...). Each
name's score of the box is its best detection overlapping the box (IoU > ``match_iou``); with ``t``
the target's and ``a`` the best variant's,

    p = t / (t + margin * a)

so ``p >= 0.5`` (the default ``hit_check.threshold``) exactly when ``t >= margin * a``: a
``margin`` below 1 keeps a target the model reads only a little worse than a variant, and rejects a
box some variant explains clearly better. A box no name detects, or a name without a contrasted
word, gets None (abstain).

It needs nothing but the :class:`~search.localizer.Localizer` protocol: the window's encoding is the
localizer's to cache, and ``set_image`` does not rebind the localizer (the session already did).
Cost: ``1 + len(variants)`` locate calls on one region per box, counted in ``stats().localizer_calls``.

As a command, the search model benchmark of ``seal bench vsm`` with the contrast check asked first,
in front of the configured hit check::

    python -m research.contrast --model checkpoints/vsm_tiny --bench runs/synth_test80 --n-targets 200 \
        --out runs/bench_vsm_contrast.json [--margin 0.6] [--window 1.25]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from search.config import SearchConfig
from seal.core.geometry import box_window_xyxy, iou_xyxy
from seal.core.image_source import ImageSource
from search.localizer import BoxXYXY, Localizer
from search.tree import leaf_side
from search.hit_check.protocol import HitCheckStats


SHAPES = ["circle", "square", "triangle", "star", "diamond", "cross", "ring", "hexagon"]
"""SynthVStar's shapes: the contrasted kind of the measured runs."""


@dataclass
class ContrastConfig:
    """The contrast check's knobs (the values of the measured runs)."""

    vocabularies: dict[str, list[str]] = field(default_factory=lambda: {"shape": list(SHAPES)})
    """Kind -> its values; a target word found in one of them is swapped for each other value of
    that kind to make the variants."""
    margin: float = 0.6
    """See the module docstring (> 0)."""
    window: float = 1.25
    """The window's side in leaf sides (at least twice the box's long side)."""
    match_iou: float = 0.5
    """A detection is the box's when their IoU exceeds this."""

    def __post_init__(self) -> None:
        if self.margin <= 0 or self.window <= 0 or not 0 < self.match_iou < 1:
            raise ValueError(f"ContrastConfig: need margin > 0, window > 0, 0 < match_iou < 1; found "
                             f"{self.margin} / {self.window} / {self.match_iou}")


class ContrastCheck:
    """A :class:`~search.hit_check.protocol.HitCheck` built on a localizer.

    Args:
        localizer: the search's localizer (the same object: its caches are shared).
        cfg: the contrast check's knobs.
        search_cfg: the search config (leaf side of the window).
    """

    name = "contrast"

    def __init__(self, localizer: Localizer, cfg: ContrastConfig, search_cfg: SearchConfig) -> None:
        self.localizer, self.cfg = localizer, search_cfg
        self.kind_of = {str(v).lower(): k for k, values in cfg.vocabularies.items() for v in values}
        self.values = {k: [str(v).lower() for v in values] for k, values in cfg.vocabularies.items()}
        self.margin, self.window, self.match_iou = cfg.margin, cfg.window, cfg.match_iou
        self._size: tuple[int, int] | None = None
        self._stats = HitCheckStats()

    def set_image(self, image: ImageSource) -> None:
        self._size = (image.width, image.height)
        self._stats = HitCheckStats()

    def stats(self) -> HitCheckStats:
        return replace(self._stats)

    def variants(self, target: str) -> list[str]:
        """The names one contrasted word away from ``target`` (lower case, in vocabulary order)."""
        words = target.lower().split()
        out = []
        for i, w in enumerate(words):
            kind = self.kind_of.get(w)
            if kind is not None:
                out += [" ".join(words[:i] + [v] + words[i + 1:]) for v in self.values[kind] if v != w]
        return out

    def check(self, target: str, box_xyxy: BoxXYXY) -> float | None:
        if self._size is None:
            raise RuntimeError("ContrastCheck.check before set_image")
        self._stats.calls += 1
        variants = self.variants(target)
        if not variants:
            self._stats.abstained += 1
            return None
        window = self._window(box_xyxy)
        t = self._box_score(target, window, box_xyxy)
        a = max(self._box_score(v, window, box_xyxy) for v in variants)
        if t + a <= 0.0:
            self._stats.abstained += 1
            return None
        return float(t / (t + self.margin * a))

    def _window(self, box: BoxXYXY) -> BoxXYXY:
        """The square around ``box``: ``window`` leaf sides, at least twice the box's long side."""
        w, h = self._size  # type: ignore[misc]
        return box_window_xyxy(box, self.window * leaf_side(w, h, self.cfg), w, h)

    def _box_score(self, name: str, window: BoxXYXY, box: BoxXYXY) -> float:
        """``name``'s best detection score among its boxes in ``window`` matching ``box`` (0 if none)."""
        (det,) = self.localizer.locate(name, [window])
        self._stats.localizer_calls += 1
        scores = np.asarray(det.scores, dtype=np.float64).ravel()
        if scores.size == 0:
            return 0.0
        match = np.asarray(iou_xyxy(box, det.boxes_xyxy)).ravel() > self.match_iou
        return float(scores[match].max()) if match.any() else 0.0


def main(argv: list[str] | None = None) -> int:
    """The search model benchmark (:func:`eval.bench_vsm.run_bench_vsm`) with the contrast check
    asked first, then the configured hit check (:class:`~search.hit_check.protocol.AllChecks`)."""
    import torch

    from eval.bench_targets import list_targets
    from eval.bench_vsm import check_strategies, run_bench_vsm
    from research.cli import add_hit_check_model, input_error, parse_search_model_args, target_parser
    from search.hit_check.protocol import AllChecks
    from research.cli import command
    from seal.cli.cmd_search import LOCALIZERS, load_hit_check
    from seal.core.errors import InputError
    from seal.core.runs import set_command_line

    p = target_parser("contrast", __doc__, "checkpoints/vsm_tiny", "VSM checkpoint directory", n_targets=100,
                      threads=1, out_required=True, out_help="report JSON")
    p.add_argument("--margin", type=float, default=ContrastConfig.margin, help="see the module docstring")
    p.add_argument("--window", type=float, default=ContrastConfig.window, help="window side in leaf sides")
    p.add_argument("--strategies", default="vstar,bfs", help="vstar, optionally with bfs")
    add_hit_check_model(p)
    set_command_line(command("contrast", argv))  # recorded in the report
    try:
        args, cfg = parse_search_model_args(p, argv)
        try:
            contrast_cfg = ContrastConfig(margin=args.margin, window=args.window)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        strategies = check_strategies(tuple(s.strip() for s in args.strategies.split(",") if s.strip()))
        torch.set_num_threads(args.threads)
        targets = list_targets(args.bench)[: max(args.n_targets, 0)]
        if not targets:
            raise InputError("no targets in the benchmark folder", args.bench)
        localizer = LOCALIZERS["vsm"](args, cfg)
        product = load_hit_check(cfg, localizer)
        checks = [ContrastCheck(localizer, contrast_cfg, cfg.search), *([] if product is None else [product])]
        hit_check = checks[0] if len(checks) == 1 else AllChecks(checks, cfg.hit_check.threshold)
        run_bench_vsm(cfg, localizer, hit_check, targets, Path(args.out), bench=args.bench, strategies=strategies,
                      threads=args.threads)
    except InputError as exc:
        return input_error("contrast", exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
