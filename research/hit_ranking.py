"""How far best-of selection could go with a hit check: every confident instance, ranked.

    python -m research.hit_ranking --model checkpoints/vsm_tiny --bench runs/synth_test80 --n-targets 200 \
        --out runs/hit_ranking.json

``search.select: best`` answers with the best-ranked of the confident hits it has seen. This script
takes the navigation out: for each (sample, target name) a bfs search in multi-instance mode walks
the tree (up to ``search.max_nodes``; no hit check, no zoom) and keeps every confident box (score
``> confidence_high``, NMS-deduplicated): the *candidates*. The hit check then judges every
candidate, each of its members on its own (the crop matcher, the VQA LLM's, and with ``--contrast``
the contrast check of :mod:`research.contrast` first). Reported over the targets:

- ``in_candidates``: a candidate is the target (IoU >= 0.5): the ceiling of any ranking;
- ``top1``: the best-ranked candidate is the target, per ranking: ``score`` (the localizer's alone),
  ``check`` (the check as the engine combines its members, :class:`search.hit_check.protocol.AllChecks`),
  ``check_x_score`` (:func:`search.hit_check.rules.rank`, what ``select: best`` uses) and
  ``product_x_score`` (the members' product instead of their minimum, x score);
- ``accept_target``: the target's candidate passes the check (``>= hit_check.threshold``);
  ``wrong_accepted_per_target``: candidates that are not the target and pass it.

A check a member cannot make (None) counts at ``hit_check.threshold``, as in the engine.
``--reuse REPORT`` takes the candidates from an earlier report of the same targets (the search part
is the slow one and does not depend on the check). Writes the report with per-target rows to ``--out``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from research.cli import add_hit_check_model, command, input_error, parse_search_model_args, target_parser, write_report
from seal.core.errors import InputError

RANKINGS = ("score", "check", "check_x_score", "product_x_score")


def collect_candidates(localizer: Any, image: Any, names: Sequence[str], cfg: Any) -> list[list[tuple[list, float]]]:
    """Per name, the confident instances ``[(box_xyxy, score), ...]`` of a full multi-instance bfs."""
    from search.session import SearchSession

    search_cfg = replace(cfg.search, strategy="bfs", multi_instance=True)
    session = SearchSession(localizer, image, search_cfg)  # multi-instance: no zoom, no hit check
    out = []
    for name in names:
        result = session.search(name)
        out.append([([float(v) for v in box], float(score)) for box, score in result.instances])
    return out


def judge(members: Sequence[Any], target: str, box: Sequence[float]) -> list[float | None]:
    """Each member check's probability for ``box`` (None: it abstained)."""
    return [m.check(target, box) for m in members]


def ranking_keys(score: float, probs: Sequence[float | None], threshold: float) -> dict[str, float]:
    """The candidate's key under each of :data:`RANKINGS` (higher ranks first); ``check``: the members
    combined by :func:`search.hit_check.protocol.all_checks` (all abstaining: ``threshold``, as the
    engine counts it)."""
    from search.hit_check.rules import rank_key
    from search.hit_check.protocol import all_checks

    check = all_checks(probs, threshold)
    product = float(np.prod([threshold if p is None else p for p in probs])) if probs else None
    return {"score": score, "check": threshold if check is None else check,
            "check_x_score": rank_key(score, check, threshold),
            "product_x_score": rank_key(score, product, threshold)}


def summarize(rows: Sequence[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """The module docstring's figures over per-target ``rows`` (``candidates``: [{iou, score, probs}])."""
    n = max(len(rows), 1)
    top1 = {k: 0 for k in RANKINGS}
    inside = accepted = wrong = 0
    for r in rows:
        cands = r["candidates"]
        hits = [c["iou"] >= 0.5 for c in cands]
        keys = [ranking_keys(c["score"], c["probs"], threshold) for c in cands]
        passes = [k["check"] >= threshold for k in keys]  # an abstention passes
        inside += any(hits)
        accepted += any(h and p for h, p in zip(hits, passes))
        wrong += sum(p and not h for h, p in zip(hits, passes))
        for name in RANKINGS if cands else ():
            top1[name] += hits[int(np.argmax([k[name] for k in keys]))]
    return {"targets": len(rows), "in_candidates": round(inside / n, 4),
            "top1": {k: round(v / n, 4) for k, v in top1.items()},
            "accept_target": round(accepted / n, 4), "wrong_accepted_per_target": round(wrong / n, 3),
            "mean_candidates": round(sum(len(r["candidates"]) for r in rows) / n, 2)}


def measure(localizer: Any, members: Sequence[Any], targets: Sequence, cfg: Any,
            reused: dict[tuple[str, str], list] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Rows and summary for ``targets`` (:class:`eval.bench_targets.BenchTarget`); ``reused``: candidates
    by ``(annotation, name)`` from an earlier report (every target must be there)."""
    from seal.core.geometry import iou_xyxy
    from seal.core.image_source import ImageSource

    by_image: dict[Path, list] = {}
    for t in targets:
        by_image.setdefault(t.image, []).append(t)
    rows: list[dict[str, Any]] = []
    started, check_s, check_n = time.perf_counter(), 0.0, 0
    for k, (path, group) in enumerate(by_image.items(), start=1):
        image = ImageSource.from_path(path, cfg.image.max_pixels)
        if reused is None:
            found = collect_candidates(localizer, image, [t.name for t in group], cfg)
        else:
            missing = [t for t in group if (str(t.annotation), t.name) not in reused]
            if missing:
                raise InputError(f"--reuse: no candidates for target {missing[0].name!r}", missing[0].annotation)
            localizer.set_image(image)  # the contrast check locates on it
            found = [reused[(str(t.annotation), t.name)] for t in group]
        for m in members:
            m.set_image(image)
        for t, cands in zip(group, found):
            judged = []
            for box, score in cands:
                t0 = time.perf_counter()
                probs = judge(members, t.name, box)
                check_s, check_n = check_s + time.perf_counter() - t0, check_n + 1
                judged.append({"box_xyxy": box, "score": score, "probs": probs,
                               "iou": float(iou_xyxy(box, t.boxes_xyxy).max())})
            rows.append({"sample": str(t.annotation), "target": t.name, "candidates": judged})
        log(f"image {k}/{len(by_image)}: {len(rows)} targets, {time.perf_counter() - started:.0f} s")
    if not rows:
        raise InputError("no targets to measure")
    threshold = cfg.hit_check.threshold
    return {**summarize(rows, threshold), "members": [getattr(m, "name", "?") for m in members],
            "seconds_per_check": round(check_s / max(check_n, 1), 4), "rows": rows}


def read_reused(path: Path) -> dict[tuple[str, str], list]:
    """Candidates ``(annotation, name) -> [(box, score), ...]`` of an earlier report."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        return {(r["sample"], r["target"]): [(c["box_xyxy"], float(c["score"])) for c in r["candidates"]]
                for r in report["rows"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--reuse: not a hit_ranking report ({exc})", path) from exc


def _members(hit_check: Any) -> list[Any]:
    from search.hit_check.protocol import AllChecks

    if hit_check is None:
        return []
    return list(hit_check.checks) if isinstance(hit_check, AllChecks) else [hit_check]


def main(argv: list[str] | None = None) -> int:
    import torch

    from eval.bench_targets import list_targets
    from research.contrast import ContrastCheck, ContrastConfig
    from seal.cli.cmd_search import LOCALIZERS, load_hit_check

    p = target_parser("hit_ranking", __doc__, "checkpoints/vsm_tiny", "VSM checkpoint directory", n_targets=100,
                      threads=1, out_help="report JSON", out_required=True)
    p.add_argument("--reuse", type=Path, help="take the candidates from this earlier report")
    add_hit_check_model(p)
    p.add_argument("--contrast", action="store_true", help="the contrast check (research.contrast) judges too, first")
    try:
        args, cfg = parse_search_model_args(p, argv)
        torch.set_num_threads(args.threads)
        reused = read_reused(args.reuse) if args.reuse else None
        targets = list_targets(args.bench)[: max(args.n_targets, 0)]
        localizer = LOCALIZERS["vsm"](args, cfg)
        members = _members(load_hit_check(cfg, localizer))
        if args.contrast:
            members.insert(0, ContrastCheck(localizer, ContrastConfig(), cfg.search))
        report = measure(localizer, members, targets, cfg, reused, log=lambda m: print(m, file=sys.stderr))
    except InputError as exc:
        return input_error("hit_ranking", exc)
    report = {"command": command("hit_ranking", argv), "model": str(args.model), "bench": str(args.bench), **report}
    write_report(args.out, report, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
