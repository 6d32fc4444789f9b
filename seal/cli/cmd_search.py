"""``seal search``: find named targets in one image with the V* search and print / record how.

Output: one line per visited node as the search runs, a summary per target, and with ``--json`` one
JSON object as the last stdout line: the :meth:`SearchResult.to_json` fields (``box_xyxy`` in
full-image pixels of the upright image, or null) plus ``image``, ``localizer``, ``image_width``,
``image_height``, ``localizer_stats`` and, when the annotation gives the target's box, ``gt_iou``.
With several targets the top-level ``target`` / ``box_xyxy`` / ``score`` are lists (one per
target), ``found`` is true when all were found, the counts are totals, and ``results`` holds the
per-target objects.

With the ``vsm`` localizer, confident hits pass the hit check (:mod:`search.hit_check`; the
``hit_check`` config section): the search model's crop matcher, and with ``--hit-check-model DIR``
a VQA LLM reading the named words back from a crop.

Localizers (``--localizer``, ``models.localizer``): ``vsm`` (the trained V* search model at
``--model DIR``, default ``checkpoints/vsm_tiny``; built on a LLaVA, LLaVA-OneVision or Qwen2.5-VL
base; a plain base checkpoint is refused with the ``seal train vsm --base`` command that makes one)
and ``oracle`` (simulated from ``--annotation``).

``--trace-dir D`` writes ``trace.json``, ``search_graph.graphml`` and the PNG renderings
(:mod:`search.render`) into ``D`` (one sub-folder ``D/<k>_<target>/`` per target when there are
several), plus ``D/config.yaml`` and ``D/run.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from seal.cli.common import add_config_args, add_model_args, print_json_line, resolve_config
from seal.core.runs import write_run_record
from seal.config import SearchCommandConfig as Config
from seal.core.errors import InputError
from seal.core.outputs import writable_dir, write_errors

STRATEGIES = ("vstar", "bfs", "dfs", "random-bfs", "random-dfs")


def _oracle_localizer(args: argparse.Namespace, cfg: Config) -> Any:
    from search.oracle import OracleLocalizer

    if not args.annotation:
        raise InputError("--localizer oracle needs --annotation JSON (the V*Bench ground truth it simulates)")
    return OracleLocalizer.from_annotation(args.annotation, cfg.oracle, cfg.seed)


def _vsm_localizer(args: argparse.Namespace, cfg: Config) -> Any:
    from search.vsm.config import VSMPredictorConfig
    from search.vsm.localizer import load_vsm_localizer
    from seal.core.paths import resolve_dir

    from seal.models.vlm import torch_dtype

    return load_vsm_localizer(resolve_dir(cfg.models.vsm_path, "models.vsm_path"), device=cfg.models.device,
                              dtype=torch_dtype(cfg.models.dtype),
                              cfg=VSMPredictorConfig(token_cut=cfg.search.token_cut))


LOCALIZERS: dict[str, Callable[[argparse.Namespace, Config], Any]] = {"oracle": _oracle_localizer,
                                                                      "vsm": _vsm_localizer}
"""``--localizer`` name -> factory ``(args, cfg) -> Localizer``. A trained model is one more entry."""


def load_hit_check(cfg: Config, localizer: Any) -> Any:
    """The hit check of ``localizer``'s boxes (:func:`search.hit_check.build.build_hit_check`); the
    VQA LLM that reads the words, when it checks, is ``hit_check.vqa_path`` or ``models.vqa_path``."""
    from search.hit_check.build import build_hit_check
    from seal.core.paths import resolve_dir

    def load_vqa(path: str | None) -> tuple[Any, dict]:
        from seal.vqa.model import VQAModel

        field = "models.vqa_path" if path is None else "hit_check.vqa_path"
        vqa = VQAModel.load(resolve_dir(path or cfg.models.vqa_path, field), device=cfg.models.device,
                            dtype=cfg.models.dtype, vwm_config=cfg.vwm, device_map=cfg.models.device_map or None)
        return vqa, vqa.hit_check_settings()

    return build_hit_check(cfg.hit_check, localizer, load_vqa, cfg.vision_budget)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an image for named targets (V* search), print the steps and result")
    p.add_argument("--image", required=True, help="image file (any PIL-readable format; EXIF orientation applied)")
    p.add_argument("--target", action="append", default=[], metavar="NAME",
                   help="target name; repeat for several. Default: every target_object of --annotation")
    p.add_argument("--localizer", choices=sorted(LOCALIZERS),
                   help="model that answers locate / suggest_region (sets models.localizer; default vsm; "
                        "oracle needs --annotation)")
    p.add_argument("--model", metavar="DIR",
                   help="search model checkpoint for --localizer vsm (sets models.vsm_path; default "
                        "checkpoints/vsm_tiny); its manifest's search defaults sit under --config and --search.*")
    p.add_argument("--annotation", metavar="JSON", help="V*Bench per-sample JSON (target_object + bbox)")
    p.add_argument("--hit-check-model", metavar="DIR",
                   help="a VQA LLM that also reads the confident boxes' words (sets hit_check.vqa_path and "
                        "hit_check.vqa=always); --hit_check.enabled=false turns the hit check off")
    p.add_argument("--strategy", choices=STRATEGIES, help="expansion order (overrides search.strategy)")
    p.add_argument("--trace-dir", metavar="DIR",
                   help="write trace.json, search_graph.graphml, PNGs, config.yaml and run.json here")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last stdout line")
    p.add_argument("--quiet", action="store_true", help="do not print the per-step lines")
    add_model_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seal.core.image_source import ImageSource
    from search.session import SearchSession

    args.overrides = list(args.overrides or [])
    if args.strategy:
        args.overrides.append(f"search.strategy={args.strategy}")
    if args.localizer:
        args.overrides.append(f"models.localizer={args.localizer}")
    if args.model:
        args.overrides.append(f"models.vsm_path={args.model}")
    if args.hit_check_model:
        args.overrides += [f"hit_check.vqa_path={args.hit_check_model}", "hit_check.vqa=always"]
    # the search model's tuned settings (its manifest's search defaults) sit under the user's config
    cfg = resolve_config(args, Config)
    if args.trace_dir:
        writable_dir(args.trace_dir, "--trace-dir")  # before the search, not after it
    localizer = LOCALIZERS[cfg.models.localizer](args, cfg)
    truth = _annotated_targets(args, cfg)
    targets = _targets(args, truth)
    image = ImageSource.from_path(args.image, cfg.image.max_pixels)
    session = SearchSession(localizer, image, cfg.search, load_hit_check(cfg, localizer), cfg.hit_check, cfg.seed)

    results, records = [], []
    for target in targets:
        prefix = f"[{target}] " if len(targets) > 1 else ""
        if not args.quiet:
            print(f"{prefix}searching {args.image} ({image.width}x{image.height}) for {target!r} "
                  f"with {localizer.name}, strategy {cfg.search.strategy}", flush=True)
        on_step = None if args.quiet else (lambda ev, p=prefix: print(p + format_step(ev), flush=True))
        result = session.search(target, on_step=on_step)
        print(format_summary(result), flush=True)
        results.append(result)
        records.append(_record(result, args, image, localizer, truth))  # stats: cumulative for this image

    if args.trace_dir:
        with write_errors(args.trace_dir, "--trace-dir"):  # disk full while writing: one line
            _write_traces(Path(args.trace_dir), image, results, cfg)
        print(f"trace written to {args.trace_dir}", flush=True)
    if args.json:
        print_json_line(records[0] if len(records) == 1 else _combine(records))
    return 0


def format_step(ev: Any) -> str:
    """One line per visited node: order, level, box (full-image xyxy), priority, best score, cue."""
    box = ",".join(f"{v:.0f}" for v in ev.box_xyxy)
    check = f" check {ev.hit_check_score:.2f}" if ev.hit_check_score >= 0 else ""
    return (f"  #{ev.visit_order:<3d} L{ev.level} [{box}] prio {ev.priority:.3f} "
            f"score {ev.best_score:.2f} cue {ev.cue:<7s} hmax {ev.heatmap_max:6.2f} queue {ev.queue_size}{check}")


def format_summary(result: Any) -> str:
    if result.found and result.box_xyxy:
        verdict = "found at [" + ",".join(f"{v:.0f}" for v in result.box_xyxy) + "]"
    else:
        verdict = "NOT found"
    return (f"{result.target!r}: {verdict}, score {result.score:.2f}; {result.nodes_visited} nodes, "
            f"{result.model_calls} model calls, {result.seconds:.3f} s (localizer {result.localizer_seconds:.3f} s), "
            + (f"{result.hit_check_calls} hit checks ({result.hit_check_seconds:.3f} s), "
               if result.hit_check_calls else "")
            + f"stop: {result.stop_reason}")


def _targets(args: argparse.Namespace, truth: dict[str, Any]) -> list[str]:
    """``--target`` names (deduplicated, in order), else every target of the annotation."""
    names = list(dict.fromkeys(t.strip() for t in args.target if t.strip())) or list(truth)
    if not names:
        raise InputError("give --target NAME (repeatable) or --annotation JSON whose target_object lists the targets")
    return names


def _annotated_targets(args: argparse.Namespace, cfg: Config) -> dict[str, Any]:
    """Normalised name -> ``(N, 4)`` ground-truth ``xyxy`` boxes from ``--annotation`` ({} without one)."""
    from search.oracle import OracleLocalizer

    return OracleLocalizer.from_annotation(args.annotation, cfg.oracle).targets if args.annotation else {}


def _record(result: Any, args: argparse.Namespace, image: Any, localizer: Any, truth: dict[str, Any]) -> dict:
    """``result.to_json()`` + image / localizer facts + ``gt_iou`` (best IoU with an annotated instance)."""
    from seal.core.geometry import iou_xyxy
    from search.oracle import normalize_name

    rec = result.to_json()
    stats = localizer.stats()
    rec.update(image=str(args.image), image_width=image.width, image_height=image.height,
               localizer=localizer.name,
               localizer_stats={"patches_encoded": stats.patches_encoded,
                                "encode_cache_hits": stats.encode_cache_hits, **stats.extra})
    gt = truth.get(normalize_name(result.target))
    if gt is not None and len(gt):
        rec["gt_iou"] = float(iou_xyxy(result.box_xyxy, gt).max()) if result.box_xyxy else 0.0
    return rec


def _combine(records: list[dict]) -> dict:
    return {
        "target": [r["target"] for r in records],
        "found": all(r["found"] for r in records),
        "box_xyxy": [r["box_xyxy"] for r in records],
        "score": [r["score"] for r in records],
        "nodes_visited": sum(r["nodes_visited"] for r in records),
        "nodes_scored": sum(r["nodes_scored"] for r in records),
        "model_calls": sum(r["model_calls"] for r in records),
        "seconds": sum(r["seconds"] for r in records),
        "localizer_seconds": sum(r["localizer_seconds"] for r in records),
        "image": records[0]["image"],
        "localizer": records[0]["localizer"],
        "localizer_stats": records[-1]["localizer_stats"],
        "results": records,
    }


def _write_traces(out: Path, image: Any, results: list, cfg: Config) -> None:
    from search.render import target_folder, write_search_trace

    write_run_record(out, cfg)
    for k, result in enumerate(results, start=1):
        folder = out if len(results) == 1 else target_folder(out, k, result.target)
        write_search_trace(image, result.trace, folder)
