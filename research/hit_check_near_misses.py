"""How well the search's hit check tells a target from its near misses, with the boxes given:

    python -m research.hit_check_near_misses --model checkpoints/vqa_tiny --bench runs/synth_test80 --n-targets 40

For each (sample, target name) (``eval.bench_targets.list_targets`` order) of a TEST-split folder with
SynthVStar sidecars, :class:`search.hit_check.words.VQAWordCheck` judges the target's ground-truth
box and the box of each of its near misses (objects whose name differs in one word). Reported, over
all targets and per name kind (colour- / pattern-named):

- ``accept_target``: target boxes judged ``>= hit_check.threshold``;
- ``accept_near``: near-miss boxes accepted, split by the kind of the word that differs
  (``color`` / ``pattern`` / ``shape``): each is a wrong hit the check lets through;
- ``wins``: the target's probability is above all of its near misses';
- ``seconds_per_box``: mean wall time of one ``check`` call.

``--jitter F`` moves each box's edges by up to ``F`` of its side (uniform, seeded), as a localizer's
boxes are off the truth: a check that learned the exact framing of ground-truth crops shows it here.

Prints one JSON line; ``--out`` also writes it.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Sequence

import numpy as np

from research.cli import input_error, target_parser, write_report
from seal.cli.common import parse_with_config
from seal.config import SearchCommandConfig
from seal.core.errors import InputError


def measure(hit_check: Any, targets: Sequence, threshold: float, max_pixels: int, jitter: float = 0.0,
            seed: int = 0) -> dict[str, Any]:
    """The report of the module docstring for ``hit_check`` (any :class:`search.hit_check.protocol.HitCheck`);
    ``jitter``: each box's edges moved by up to this fraction of its side."""
    from eval.synth.scene import ATTRS
    from eval.synth.vocab import name_kind
    from research.vsm_windows import near_misses
    from seal.core.geometry import jitter_xyxy, xywh_to_xyxy
    from seal.core.image_source import ImageSource

    records: list[dict[str, Any]] = []
    current, seconds, calls = None, 0.0, 0
    rng = np.random.default_rng(seed)

    for t in targets:
        truth, near = near_misses(t.annotation, t.name)
        if truth is None:
            raise InputError(f"no SynthVStar sidecar names the target {t.name!r}", t.annotation)
        if current != t.image:
            image = ImageSource.from_path(t.image, max_pixels)
            hit_check.set_image(image)
            current = t.image

        def box(obj) -> tuple[float, ...]:
            truth_box = xywh_to_xyxy(obj["bbox"])
            return tuple(truth_box) if jitter == 0 else jitter_xyxy(truth_box, rng, jitter, image.width, image.height)

        t0 = time.perf_counter()
        probs = [hit_check.check(t.name, box(o)) for o in [truth, *near]]
        seconds, calls = seconds + time.perf_counter() - t0, calls + len(probs)
        probs = [1.0 if p is None else float(p) for p in probs]  # an abstention accepts
        named = [k for k in ATTRS if truth[k] in t.name.split()]
        records.append({"kind": name_kind(t.name), "target": probs[0],
                        "near": [(next(k for k in named if o[k] != truth[k]), p) for o, p in zip(near, probs[1:])]})
    if not records:
        raise InputError("no targets to measure")
    report = {**summarize(records, threshold), "seconds_per_box": round(seconds / max(calls, 1), 4)}
    kinds = sorted({r["kind"] for r in records if r["kind"]})
    if len(kinds) > 1:
        report["by_name_kind"] = {k: summarize([r for r in records if r["kind"] == k], threshold) for k in kinds}
    return report


def summarize(records: Sequence[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """The module docstring's figures over ``records`` (``target``: p; ``near``: [(differing kind, p)])."""
    target = np.array([r["target"] for r in records])
    by_kind: dict[str, list[float]] = {}
    for r in records:
        for kind, p in r["near"]:
            by_kind.setdefault(kind, []).append(p)
    near = [p for ps in by_kind.values() for p in ps]
    return {"targets": len(records), "near_boxes": len(near),
            "accept_target": round(float((target >= threshold).mean()), 4),
            "accept_near": round(float(np.mean(np.array(near) >= threshold)), 4) if near else float("nan"),
            "accept_near_by_word": {k: f"{sum(p >= threshold for p in ps)}/{len(ps)}"
                                    for k, ps in sorted(by_kind.items())},
            "wins": round(float(np.mean([all(r["target"] > p for _, p in r["near"]) for r in records])), 4)}


def main(argv: list[str] | None = None) -> int:
    import torch

    from eval.bench_targets import list_targets
    from seal.vqa.model import VQAModel
    from search.hit_check.words import VQAWordCheck
    from vwm.budget import VisionBudget

    p = target_parser("hit_check_near_misses", __doc__, "checkpoints/vqa_tiny", "VQA LLM checkpoint directory",
                      n_targets=40, threads=2, bench_help="TEST-split V*Bench-layout folder with synth_annotations/")
    p.add_argument("--jitter", type=float, default=0.0, help="move each box edge by up to this fraction of its side")
    try:
        args, cfg = parse_with_config(p, argv, SearchCommandConfig, profile=False)
        if not 0.0 <= args.jitter <= 0.5:
            raise InputError(f"--jitter: expected 0..0.5 of the box side, found {args.jitter}")
        torch.set_num_threads(args.threads)
        if not args.model.is_dir():
            raise InputError("no such model directory", args.model)
        targets = list_targets(args.bench)[: max(args.n_targets, 0)]
        vqa = VQAModel.load(args.model, vwm_config=cfg.vwm)
        check = VQAWordCheck(vqa, cfg.hit_check.asked_as(vqa.hit_check_settings()),
                             VisionBudget(cfg.vision_budget, vqa.processor))
        report = measure(check, targets, cfg.hit_check.threshold, cfg.image.max_pixels, args.jitter)
    except InputError as exc:
        return input_error("hit_check_near_misses", exc)
    print(write_report(args.out, {"model": str(args.model), "bench": str(args.bench), "jitter": args.jitter, **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
