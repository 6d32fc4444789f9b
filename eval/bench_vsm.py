"""Benchmark of a trained V* search model (VSM): search success, node counts, calibration, speed, memory.

``python -m eval.bench_vsm [--model checkpoints/vsm_tiny] [--bench runs/synth_test_vsm] [--n-samples 80]
[--n-targets 100] [--out runs/bench_vsm/vsm_tiny.json] [--config YAML ...] [--search.field=value ...]``

On a held-out SynthVStar TEST-split benchmark folder (generated into ``--bench`` with ``--n-samples``
vstar-suite samples when it holds none), for the first ``--n-targets`` (sample, target) pairs:

- **search**: :class:`search.session.SearchSession` with the VSM localizer, strategies ``vstar`` and
  ``bfs`` (same model): ``found_rate`` (found and IoU >= 0.5 with a ground-truth box of that name;
  ``found_by_name_kind``: hits / targets for SynthVStar names by colour and by pattern),
  ``mean_nodes_all`` (nodes visited, over all targets), ``mean_nodes_found``, ``mean_model_calls``;
  ``vstar_bfs_node_ratio`` = vstar / bfs mean nodes;
- **calibration**: every node of each image's search tree (root, level 1, level 2) is located for
  each target; the pair (best detection score, whether that best box has IoU >= 0.5 with the
  target) over all those patches gives ``ece`` (10 equal-width bins), the Brier score and the
  accuracy of "score > 0.5"; ``search_score_ece`` does the same over the searches' final scores;
- **speed**: median seconds of one ``locate`` call on a batch of 4 patches never seen before
  (vision encoding included), over ``--timing-calls`` calls;
- **memory**: peak resident set size of this process (``ru_maxrss``), MB.

The report (with the command line) is printed and written to ``--out`` as JSON.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from eval.target_cli import command, input_error, target_parser, write_report
from seal.cli.common import parse_with_config
from seal.core.errors import InputError

STRATEGIES = ("vstar", "bfs")


def ensure_bench(folder: Path, n_samples: int, seed: int = 0) -> Path:
    """``folder`` holding a TEST-split vstar-suite SynthVStar benchmark (generated when missing)."""
    from eval.synth.config import SynthConfig
    from eval.synth.generate import generate_benchmark

    if not (folder / "categories.json").is_file():
        generate_benchmark(SynthConfig(n=n_samples, seed=seed, split="test", suite="vstar"), folder)
    return folder


def expected_calibration_error(scores: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE: bin-size-weighted mean |accuracy - mean score| over ``bins`` equal-width score bins."""
    scores, correct = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if len(scores) == 0:
        return float("nan")
    which = np.minimum((scores * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - scores[sel].mean())
    return float(ece)


def calibration(scores: list[float], correct: list[bool]) -> dict[str, float]:
    s, c = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if not len(s):
        return {"n": 0, "ece": float("nan"), "brier": float("nan"), "accuracy_at_0.5": float("nan"), "positives": 0}
    return {"n": int(len(s)), "ece": expected_calibration_error(s, c), "brier": float(np.mean((s - c) ** 2)),
            "accuracy_at_0.5": float(np.mean((s > 0.5) == (c > 0.5))), "positives": int(c.sum())}


def run_bench(localizer: Any, targets: list, cfg: Any, timing_calls: int = 20, log=print,
              verifier: Any = None, strategies: tuple[str, ...] = STRATEGIES,
              patch_calibration: bool = True) -> dict[str, Any]:
    """Search / calibration / timing over ``targets`` (:class:`eval.bench_search.BenchTarget`);
    ``verifier``: an optional :class:`search.hit_check.protocol.HitCheck` checking the searches' hits (the
    calibration patches are the localizer's alone). ``strategies``: a quick run may search with
    ``vstar`` alone (no node ratio then); ``patch_calibration`` off skips locating every tree node."""
    from dataclasses import replace

    from seal.core.geometry import iou_xyxy
    from seal.core.image_source import ImageSource
    from search.session import SearchSession
    from training.vsm_data import search_regions

    rows: list[dict[str, Any]] = []
    cal_scores: list[float] = []
    cal_correct: list[bool] = []
    images: dict[Path, ImageSource] = {}
    by_image: dict[Path, list] = {}
    for t in targets:
        by_image.setdefault(t.image, []).append(t)
    started = time.perf_counter()
    for k, (path, group) in enumerate(by_image.items(), start=1):
        image = ImageSource.from_path(path, cfg.image.max_pixels)
        images[path] = image
        session = SearchSession(localizer, image, cfg.search, verifier)
        for t in group:
            for strategy in strategies:
                result = session.search(t.name, cfg=replace(cfg.search, strategy=strategy))
                iou = float(iou_xyxy(result.box_xyxy, t.boxes_xyxy).max()) if result.box_xyxy else 0.0
                rows.append({"sample": str(t.annotation), "target": t.name, "strategy": strategy, "iou": iou,
                             "hit": bool(result.found and iou >= 0.5), **result.to_json()})
            regions = [box for _, box in search_regions(image.width, image.height, cfg.search)]
            for det in localizer.locate(t.name, regions) if patch_calibration else ():
                box = det.best_box
                cal_scores.append(det.best_score)
                cal_correct.append(bool(box is not None and float(iou_xyxy(box, t.boxes_xyxy).max()) >= 0.5))
        log(f"image {k}/{len(by_image)}: {len(rows) // len(strategies)} targets, "
            f"{time.perf_counter() - started:.0f} s")
    search = {s: _summarize([r for r in rows if r["strategy"] == s]) for s in strategies}
    search_cal = calibration([r["score"] for r in rows if r["strategy"] == "vstar"],
                             [r["hit"] for r in rows if r["strategy"] == "vstar"])
    return {
        "n_targets": len(targets),
        "search": search,
        "vstar_bfs_node_ratio": (search["vstar"]["mean_nodes_all"] / max(search["bfs"]["mean_nodes_all"], 1e-9)
                                 if set(STRATEGIES) <= set(search) else None),
        "calibration": calibration(cal_scores, cal_correct),
        "search_score_ece": search_cal["ece"],
        "locate_batch4_median_s": _time_locate(localizer, list(images.values()), timing_calls),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
    }


def _summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from eval.synth.vocab import name_kind

    hits = [r for r in rows if r["hit"]]
    n = max(len(rows), 1)
    kinds: dict[str, list[bool]] = {}
    for r in rows:
        kinds.setdefault(name_kind(r["target"]) or "other", []).append(r["hit"])
    return {
        "found_by_name_kind": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(kinds.items())},
        "n": len(rows),
        "found_rate": len(hits) / n,
        "confident_hit_rate": sum(not r["fallback"] for r in hits) / n,
        "mean_nodes_all": sum(r["nodes_visited"] for r in rows) / n,
        "mean_nodes_found": (sum(r["nodes_visited"] for r in hits) / len(hits)) if hits else float("nan"),
        "mean_model_calls": sum(r["model_calls"] for r in rows) / n,
        "mean_verifier_calls": sum(r["hit_check_calls"] for r in rows) / n,
        "mean_seconds": sum(r["seconds"] for r in rows) / n,
    }


def _time_locate(localizer: Any, images: list, calls: int) -> float:
    """Median seconds of ``locate`` on 4 fresh regions (``set_image`` clears the feature cache)."""
    rng = np.random.default_rng(0)
    times = []
    for i in range(calls):
        image = images[i % len(images)]
        localizer.set_image(image)
        regions = []
        for _ in range(4):
            w = rng.uniform(0.2, 0.6) * image.width
            h = rng.uniform(0.2, 0.6) * image.height
            x, y = rng.uniform(0, image.width - w), rng.uniform(0, image.height - h)
            regions.append((x, y, x + w, y + h))
        t0 = time.perf_counter()
        localizer.locate("red circle", regions)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def format_report(report: dict[str, Any]) -> str:
    stops = report.get("stops") or {}
    lines = [f"{report['n_targets']} targets, hits checked by {report.get('verifier') or 'nothing'}"
             + (f"; stop above {stops['confidence_high']}, fallback from {stops['confidence_low']}"
                f" (search profile {report.get('search_profile')})" if stops else ""),
             f"{'strategy':<9} {'found':>6} {'nodes(all)':>10} {'nodes(found)':>12} {'calls':>6} {'s/target':>8}"]
    for name, m in report["search"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in m["found_by_name_kind"].items())
        checks = f", {m['mean_verifier_calls']:.2f} hit checks" if m.get("mean_verifier_calls") else ""
        lines.append(f"{name:<9} {m['found_rate']:>6.1%} {m['mean_nodes_all']:>10.2f} {m['mean_nodes_found']:>12.2f} "
                     f"{m['mean_model_calls']:>6.2f} {m['mean_seconds']:>8.2f}  ({kinds}{checks})")
    c = report["calibration"]
    ratio = report["vstar_bfs_node_ratio"]
    lines += [f"vstar / bfs nodes: {'-' if ratio is None else f'{ratio:.2f}'}",
              f"found-score calibration over {c['n']} patches ({c['positives']} correct boxes): ECE {c['ece']:.3f}, "
              f"Brier {c['brier']:.3f}, accuracy@0.5 {c['accuracy_at_0.5']:.3f}; search-score ECE "
              f"{report['search_score_ece']:.3f}",
              f"locate on 4 new patches: median {report['locate_batch4_median_s'] * 1000:.0f} ms; "
              f"peak RSS {report['peak_rss_mb']:.0f} MB"]
    return "\n".join(lines)


def _checker_label(verifier: Any, cfg: Any, verifier_model: str | None) -> str:
    """The hit check's name, with the checking VQA LLM's folder when a VQA LLM is among its members."""
    from seal.vqa.checker import plan_checker
    from search.hit_check.words import VQAWordCheck

    members = getattr(verifier, "verifiers", [verifier])
    if any(isinstance(m, VQAWordCheck) for m in members):
        return f"{verifier.name} ({plan_checker(cfg, verifier_model).path})"
    return verifier.name


def _profile_label(model) -> str | None:
    """The search model's ``search.yaml`` layered under the config, if it has one."""
    from search.profile import profile_path

    path = profile_path(model)
    return None if path is None else str(path)


def main(argv: list[str] | None = None) -> int:
    import torch

    from eval.bench_search import list_targets
    from search.vsm.localizer import load_vsm_localizer
    from seal.cli.cmd_search import load_verifier

    p = target_parser("bench_vsm", __doc__, "checkpoints/vsm_tiny", "VSM checkpoint directory", n_targets=100, threads=1,
                      out_help="report JSON (default: runs/bench_vsm/<model folder name>.json; never the checkpoint's own metrics.json)",
                      bench_help="TEST-split V*Bench-layout folder (generated here when it holds no benchmark)",
                      bench="runs/synth_test_vsm")
    p.add_argument("--n-samples", type=int, default=80, help="samples to generate when --bench is empty")
    p.add_argument("--timing-calls", type=int, default=20)
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help="comma-separated among vstar,bfs (a quick run: vstar; the node ratio needs both)")
    p.add_argument("--no-patch-calibration", action="store_true",
                   help="skip locating every tree node for the patch calibration (its ECE is then nan)")
    p.add_argument("--verifier-model", metavar="DIR",
                   help="VQA LLM checking the hits, as seal search does (default: hit_check.vqa_path, else "
                        "the checker agent.vqa_path's verifier.yaml names, else agent.vqa_path; "
                        "--hit_check.enabled=false: the search model alone)")
    try:
        args, cfg = parse_with_config(p, argv, model_arg="model")
        strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
        if not strategies or not set(strategies) <= set(STRATEGIES) or "vstar" not in strategies:
            raise InputError(f"--strategies: expected vstar and optionally bfs, found {args.strategies!r}")
        torch.set_num_threads(args.threads)
        bench = ensure_bench(args.bench, args.n_samples)
        targets = list_targets(bench)[: max(args.n_targets, 0)]
        if not targets:
            raise InputError("no targets in the benchmark folder", bench)
        localizer = load_vsm_localizer(args.model)
        verifier = load_verifier(args, cfg, localizer)
        report = run_bench(localizer, targets, cfg, args.timing_calls, log=lambda m: print(m, file=sys.stderr),
                           hit_check=verifier, strategies=strategies, patch_calibration=not args.no_patch_calibration)
    except InputError as exc:
        return input_error("bench_vsm", exc)
    report = {"command": command("bench_vsm", argv),
              "model": str(args.model), "search_profile": _profile_label(args.model),
              "stops": {k: getattr(cfg.search, k) for k in ("confidence_high", "confidence_low", "compare_nodes", "max_nodes")},
              "bench": str(bench), "threads": args.threads,
              "verifier": None if verifier is None else _checker_label(verifier, cfg, args.verifier_model),
              **report}
    print(format_report(report))
    out = args.out or Path("runs/bench_vsm") / f"{Path(args.model).name}.json"
    write_report(out, report, indent=1)
    print(f"report written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
