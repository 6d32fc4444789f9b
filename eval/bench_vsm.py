"""``seal bench vsm``: the trained V* search model (VSM) on a held-out SynthVStar benchmark: search
success, node counts, calibration, speed, memory.

On a TEST-split benchmark folder (generated into it with ``n_samples`` vstar-suite samples when it
holds none), for the first ``n_targets`` (sample, target) pairs:

- **search**: :class:`search.session.SearchSession` with the VSM localizer (and the configured hit
  check, :mod:`search.hit_check`), strategies ``vstar`` and ``bfs`` (same model): ``found_rate``
  (found and IoU >= 0.5 with a ground-truth box of that name; ``found_by_name_kind``: hits /
  targets for SynthVStar names by colour and by pattern), ``mean_nodes_all`` (nodes visited, over
  all targets), ``mean_nodes_found``, ``mean_model_calls``, ``mean_hit_check_calls``;
  ``vstar_bfs_node_ratio`` = vstar / bfs mean nodes;
- **calibration**: every node of each image's search tree (root, level 1, level 2) is located for
  each target; the pair (best detection score, whether that best box has IoU >= 0.5 with the
  target) over all those patches gives ``ece`` (10 equal-width bins), the Brier score and the
  accuracy of "score > 0.5"; ``search_score_ece`` does the same over the searches' final scores
  (the localizer's), ``search_confidence_ece`` over their :attr:`SearchResult.confidence`;
- **speed**: median seconds of one ``locate`` call on a batch of 4 patches never seen before
  (vision encoding included), over ``timing_calls`` calls;
- **memory**: peak resident set size of this process (``ru_maxrss``), MB;
- **image tokens** (a localizer that counts them, the ``vsm`` one; ``search.token_cut``): per search
  row ``lm_image_tokens`` (image tokens its LM rows read, cached patches included) and
  ``vision_tokens`` (kept tokens of the patches it encoded: what the cost ledger books; a later
  strategy reuses the first one's cached patches), summarised as ``mean_lm_image_tokens`` /
  ``mean_vision_tokens``; ``image_tokens``: kept tokens per encoded patch over the whole run.

The report (with the command line) is printed and written as JSON (:func:`run_bench_vsm`).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from eval.bench_targets import BenchTarget, list_targets, search_row
from seal.core.errors import InputError
from seal.policy.calibration import expected_calibration_error

STRATEGIES = ("vstar", "bfs")


def ensure_bench(folder: Path, n_samples: int, seed: int = 0) -> Path:
    """``folder`` holding a TEST-split vstar-suite SynthVStar benchmark (generated when missing)."""
    from eval.synth.config import SynthConfig
    from eval.synth.generate import generate_benchmark

    if not (folder / "categories.json").is_file():
        generate_benchmark(SynthConfig(n=n_samples, seed=seed, split="test", suite="vstar"), folder)
    return folder


def calibration(scores: list[float], correct: list[bool]) -> dict[str, float]:
    s, c = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if not len(s):
        return {"n": 0, "ece": float("nan"), "brier": float("nan"), "accuracy_at_0.5": float("nan"), "positives": 0}
    return {"n": int(len(s)), "ece": expected_calibration_error(s, c, n_bins=10), "brier": float(np.mean((s - c) ** 2)),
            "accuracy_at_0.5": float(np.mean((s > 0.5) == (c > 0.5))), "positives": int(c.sum())}


def run_bench(localizer: Any, targets: list[BenchTarget], cfg: Any, timing_calls: int = 20, log=print,
              hit_check: Any = None, strategies: tuple[str, ...] = STRATEGIES,
              patch_calibration: bool = True) -> dict[str, Any]:
    """Search / calibration / timing over ``targets``; ``cfg``: a config with ``image``, ``search``
    and ``hit_check`` sections and the run's ``seed``. ``hit_check``: an optional
    :class:`search.hit_check.protocol.HitCheck` checking the searches' hits (the calibration patches
    are the localizer's alone). ``strategies``: a quick run may search with ``vstar`` alone (no node
    ratio then); ``patch_calibration`` off skips locating every tree node."""
    from dataclasses import replace

    from seal.core.geometry import iou_xyxy
    from seal.core.image_source import ImageSource
    from search.session import SearchSession
    from search.tree import tree_boxes

    rows: list[dict[str, Any]] = []
    cal_scores: list[float] = []
    cal_correct: list[bool] = []
    images: dict[Path, ImageSource] = {}
    encoded = {"patches": 0, "vision_tokens": 0.0}
    by_image: dict[Path, list] = {}
    for t in targets:
        by_image.setdefault(t.image, []).append(t)
    started = time.perf_counter()
    for k, (path, group) in enumerate(by_image.items(), start=1):
        image = ImageSource.from_path(path, cfg.image.max_pixels)
        images[path] = image
        session = SearchSession(localizer, image, cfg.search, hit_check, cfg.hit_check, cfg.seed)
        for t in group:
            for strategy in strategies:
                before = localizer.stats()
                result = session.search(t.name, cfg=replace(cfg.search, strategy=strategy))
                rows.append({**search_row(t, strategy, result), "size": target_size(t, image),
                             **tokens_read(before, localizer.stats())})
            regions = [box for _, box in tree_boxes(image.width, image.height, cfg.search)]
            for det in localizer.locate(t.name, regions) if patch_calibration else ():
                box = det.best_box
                cal_scores.append(det.best_score)
                cal_correct.append(bool(box is not None and float(iou_xyxy(box, t.boxes_xyxy).max()) >= 0.5))
        done = localizer.stats()  # this image's counts (set_image reset them)
        encoded["patches"] += done.patches_encoded
        encoded["vision_tokens"] += done.extra.get("vision_tokens", float("nan"))
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
        "search_confidence_ece": calibration([r["confidence"] for r in rows if r["strategy"] == "vstar"],
                                             [r["hit"] for r in rows if r["strategy"] == "vstar"])["ece"],
        "image_tokens": {"patches_encoded": encoded["patches"],
                         "per_patch": encoded["vision_tokens"] / max(encoded["patches"], 1)},
        "locate_batch4_median_s": _time_locate(localizer, list(images.values()), timing_calls),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
    }


def tokens_read(before: Any, after: Any) -> dict[str, float]:
    """``vision_tokens`` / ``lm_image_tokens`` the localizer counted between two stats snapshots
    (:meth:`search.vsm.predictor.VSMPredictor.stats`); empty for a localizer that does not count them."""
    return {k: after.extra[k] - before.extra.get(k, 0.0) for k in ("vision_tokens", "lm_image_tokens")
            if k in after.extra}


def _summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from eval.synth.vocab import name_kind

    hits = [r for r in rows if r["hit"]]
    n = max(len(rows), 1)
    kinds: dict[str, list[bool]] = {}
    for r in rows:
        kinds.setdefault(name_kind(r["target"]) or "other", []).append(r["hit"])
    sizes = {name: [r for r in rows if lo <= r.get("size", 0.0) < hi] for name, (lo, hi) in SIZE_CLASSES.items()}
    large = sizes["large"]
    return {
        "found_by_name_kind": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(kinds.items())},
        "found_by_size": {k: f"{sum(r['hit'] for r in v)}/{len(v)}" for k, v in sizes.items()},
        "large_found_at_root_or_children": (sum(r["hit"] and (r.get("answer_level") is not None
                                                             and r["answer_level"] <= 1) for r in large) / len(large)
                                            if large else float("nan")),
        "mean_nodes_scored": sum(r["nodes_scored"] for r in rows) / n,
        "mean_forwards": sum(r.get("forwards", r["model_calls"]) for r in rows) / n,
        "mean_hit_check_forwards": sum(r.get("hit_check_forwards", 0) for r in rows) / n,
        "n": len(rows),
        "found_rate": len(hits) / n,
        "confident_hit_rate": sum(not r["fallback"] for r in hits) / n,
        "mean_nodes_all": sum(r["nodes_visited"] for r in rows) / n,
        "mean_nodes_found": (sum(r["nodes_visited"] for r in hits) / len(hits)) if hits else float("nan"),
        "mean_model_calls": sum(r["model_calls"] for r in rows) / n,
        "mean_hit_check_calls": sum(r["hit_check_calls"] for r in rows) / n,
        "mean_seconds": sum(r["seconds"] for r in rows) / n,
        **{f"mean_{k}": sum(r[k] for r in rows) / n for k in ("vision_tokens", "lm_image_tokens")
           if rows and all(k in r for r in rows)},
    }


SIZE_CLASSES = {"small": (0.0, 0.05), "medium": (0.05, 0.10), "large": (0.10, float("inf"))}
"""Target size classes by the ground truth's long side over the image's long side."""


def target_size(target: BenchTarget, image: Any) -> float:
    """Long side of ``target``'s first ground-truth box over the image's long side."""
    x1, y1, x2, y2 = (float(v) for v in target.boxes_xyxy[0])
    return max(x2 - x1, y2 - y1) / max(image.width, image.height)


def _time_locate(localizer: Any, images: list, calls: int) -> float:
    """Median seconds of ``locate`` on 4 fresh regions (``set_image`` clears the feature cache); nan
    for ``calls`` 0."""
    if calls < 1:
        return float("nan")
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
    lines = [f"{report['n_targets']} targets, hits checked by {report.get('hit_check') or 'nothing'}"
             + (f"; stop above {stops['confidence_high']}, fallback from {stops['confidence_low']}"
                + (" (the model's search defaults)" if report.get("search_profile") else "") if stops else ""),
             f"{'strategy':<9} {'found':>6} {'nodes(all)':>10} {'nodes(found)':>12} {'calls':>6} {'s/target':>8}"]
    for name, m in report["search"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in m["found_by_name_kind"].items())
        checks = f", {m['mean_hit_check_calls']:.2f} hit checks" if m.get("mean_hit_check_calls") else ""
        lines.append(f"{name:<9} {m['found_rate']:>6.1%} {m['mean_nodes_all']:>10.2f} {m['mean_nodes_found']:>12.2f} "
                     f"{m['mean_model_calls']:>6.2f} {m['mean_seconds']:>8.2f}  ({kinds}{checks})")
    c = report["calibration"]
    ratio = report["vstar_bfs_node_ratio"]
    lines.append(f"{'strategy':<9} {'forwards':>8} {'(checks)':>8} {'patches':>7} {'small':>7} {'medium':>7} "
                 f"{'large':>7} {'large@<=1':>9}")
    for name, m in report["search"].items():
        by = m["found_by_size"]
        lines.append(f"{name:<9} {m['mean_forwards']:>8.2f} {m['mean_hit_check_forwards']:>8.2f} "
                     f"{m['mean_nodes_scored']:>7.2f} {by['small']:>7} {by['medium']:>7} {by['large']:>7} "
                     f"{m['large_found_at_root_or_children']:>9.2f}")
    for name, m in report["search"].items():
        if "mean_lm_image_tokens" in m:
            lines.append(f"{name:<9} image tokens per target: the LM read {m['mean_lm_image_tokens']:.0f}, newly "
                         f"encoded {m['mean_vision_tokens']:.0f}")
    tokens = report.get("image_tokens") or {}
    if tokens.get("patches_encoded"):
        cut = report.get("token_cut") or {}
        lines.append(f"image tokens per encoded patch: {tokens['per_patch']:.1f} over {tokens['patches_encoded']} "
                     f"patches (token cut: {cut.get('mode', 'none')})")
    lines += [f"vstar / bfs nodes: {'-' if ratio is None else f'{ratio:.2f}'}",
              f"found-score calibration over {c['n']} patches ({c['positives']} correct boxes): ECE {c['ece']:.3f}, "
              f"Brier {c['brier']:.3f}, accuracy@0.5 {c['accuracy_at_0.5']:.3f}; search-score ECE "
              f"{report['search_score_ece']:.3f}, search-confidence ECE {report['search_confidence_ece']:.3f}",
              f"locate on 4 new patches: median {report['locate_batch4_median_s'] * 1000:.0f} ms; "
              f"peak RSS {report['peak_rss_mb']:.0f} MB"]
    return "\n".join(lines)


def hit_check_label(hit_check: Any, cfg: Any) -> str | None:
    """The hit check's name, with the checking VQA LLM's folder when a VQA LLM is among its members
    (``hit_check.vqa_path``, else the answering model ``models.vqa_path``); None without a check."""
    from search.hit_check.words import VQAWordCheck

    if hit_check is None:
        return None
    members = getattr(hit_check, "checks", [hit_check])
    if any(isinstance(m, VQAWordCheck) for m in members):
        return f"{hit_check.name} ({cfg.hit_check.vqa_path or cfg.models.vqa_path})"
    return hit_check.name


def _search_defaults(model: str | Path) -> dict[str, Any] | None:
    """The search model's search defaults (its manifest's), layered under the config; None if none."""
    from seal.core.manifest import read_manifest
    from seal.core.paths import resolve_dir

    return read_manifest(resolve_dir(model, "models.vsm_path"), "vsm").search_defaults or None


def check_strategies(strategies: tuple[str, ...]) -> tuple[str, ...]:
    """``strategies`` when they are ``vstar`` and optionally ``bfs``.

    Raises:
        InputError: anything else.
    """
    if not strategies or not set(strategies) <= set(STRATEGIES) or "vstar" not in strategies:
        raise InputError(f"--strategies: expected vstar and optionally bfs, found {','.join(strategies)!r}")
    return strategies


def ensure_targets(bench: Path, n_samples: int, n_targets: int) -> list[BenchTarget]:
    """The first ``n_targets`` (sample, target) pairs of ``bench``, generating the benchmark first
    (``n_samples`` samples) when the folder holds none.

    Raises:
        InputError: the folder holds no target.
    """
    targets = list_targets(ensure_bench(bench, n_samples))[: max(n_targets, 0)]
    if not targets:
        raise InputError("no targets in the benchmark folder", bench)
    return targets


def run_bench_vsm(cfg: Any, localizer: Any, hit_check: Any, targets: list[BenchTarget], out: Path, *,
                  bench: Path, timing_calls: int = 20, strategies: tuple[str, ...] = STRATEGIES,
                  patch_calibration: bool = True, threads: int = 1,
                  log=lambda m: print(m, file=sys.stderr)) -> dict[str, Any]:
    """Benchmark the search model ``localizer`` (loaded from ``cfg.models.vsm_path``) with the hit
    check ``hit_check`` (None: the model alone) on ``targets`` (:func:`ensure_targets` of
    ``bench``); print the report and write it to ``out``.

    Args:
        cfg: a config with ``image``, ``models``, ``search`` and ``hit_check`` sections.
        out: the report JSON (never the checkpoint's own ``metrics.json``).
        bench: the folder the targets come from, recorded in the report.
        strategies: ``vstar`` and optionally ``bfs`` (:func:`check_strategies`).
        threads: torch threads the caller set, recorded in the report.
        log: progress lines (one per image).
    """
    from dataclasses import asdict

    from seal.core.runs import command_line

    measured = run_bench(localizer, targets, cfg, timing_calls, log=log, hit_check=hit_check,
                         strategies=check_strategies(strategies), patch_calibration=patch_calibration)
    stops = ("confidence_high", "confidence_low", "compare_nodes", "max_nodes")
    report = {"command": command_line(),
              "model": str(Path(cfg.models.vsm_path)), "search_profile": _search_defaults(cfg.models.vsm_path),
              "stops": {k: getattr(cfg.search, k) for k in stops},
              "token_cut": asdict(cfg.search.token_cut),
              "bench": str(bench), "threads": threads, "hit_check": hit_check_label(hit_check, cfg),
              **measured}
    print(format_report(report))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float) + "\n", encoding="utf-8")
    print(f"report written to {out}")
    return report
