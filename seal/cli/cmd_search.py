"""``seal search``: find named targets in one image with the V* search and print / record how.

Output: one line per visited node as the search runs, a summary per target, and with ``--json`` one
JSON object as the last stdout line: the :meth:`SearchResult.to_json` fields (``box_xyxy`` in
full-image pixels of the upright image, or null) plus ``image``, ``localizer``, ``image_width``,
``image_height``, ``localizer_stats`` and, when the annotation gives the target's box, ``gt_iou``.
With several targets the top-level ``target`` / ``box_xyxy`` / ``score`` are lists (one per
target), ``found`` is true when all were found, the counts are totals, and ``results`` holds the
per-target objects.

With the ``vsm`` localizer, confident hits are checked by the VQA LLM reading the named colour or
pattern back from a crop (:mod:`seal.vqa.verifier`; ``verifier`` config section, ``--verifier-model``).

Localizers (``--localizer``): ``vsm`` (the trained V* search model at ``--model DIR``, default
``checkpoints/vsm_tiny``; the default localizer when that checkpoint exists) and ``oracle`` (simulated
from ``--annotation``; the default otherwise).

``--trace-dir D`` writes ``trace.json``, ``search_graph.graphml`` and the PNG renderings
(:mod:`search.render`) into ``D`` (one sub-folder ``D/<k>_<target>/`` per target when there are
several), plus ``D/config.yaml`` and ``D/run.json``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from seal.cli.common import add_config_args, print_json_line, resolve_config, write_run_record
from seal.config import Config
from seal.errors import InputError

STRATEGIES = ("vstar", "bfs", "dfs", "random-bfs", "random-dfs")


def _oracle_localizer(args: argparse.Namespace, cfg: Config) -> Any:
    from search.oracle import OracleLocalizer

    if not args.annotation:
        raise InputError("--localizer oracle needs --annotation JSON (the V*Bench ground truth it simulates)")
    return OracleLocalizer.from_annotation(args.annotation, cfg.oracle)


DEFAULT_VSM_MODEL = Path(__file__).resolve().parents[2] / "checkpoints" / "vsm_tiny"
"""The shipped V* search model (``checkpoints/vsm_tiny`` of the project), ``--model``'s default."""


def _vsm_localizer(args: argparse.Namespace, cfg: Config) -> Any:
    from search.vsm.localizer import load_vsm_localizer

    return load_vsm_localizer(args.model or DEFAULT_VSM_MODEL)


LOCALIZERS: dict[str, Callable[[argparse.Namespace, Config], Any]] = {"oracle": _oracle_localizer,
                                                                      "vsm": _vsm_localizer}
"""``--localizer`` name -> factory ``(args, cfg) -> Localizer``. A trained model is one more entry."""


def load_verifier(args: argparse.Namespace, cfg: Config, localizer: Any) -> Any:
    """The hit checker of ``localizer`` (:func:`seal.vqa.verifier.hit_checker`: the contrast check,
    the search model's crop matcher, then the VQA LLM's when wanted) when the ``verifier`` section
    applies to it; None otherwise. ``--verifier-model DIR`` makes the VQA LLM check behind the crop
    matcher too (``verifier.llm_check: auto`` read as ``always``). The checking
    model is :func:`seal.vqa.checker.plan_checker`'s: ``--verifier-model DIR``, ``verifier.model_path``
    or the checker the VQA model's profile names must exist; the default ``agent.vqa_path`` may be
    missing (then the VQA LLM does not check, and a note says so)."""
    from seal.vqa.verifier import hit_checker

    if not cfg.verifier.applies_to(localizer.name):
        return None
    if args.verifier_model and cfg.verifier.llm_check == "auto":  # a VQA checker named on the command line checks
        cfg = replace(cfg, verifier=replace(cfg.verifier, llm_check="always"))
    if not cfg.verifier.wants_llm(cfg.verifier.crop_checks(localizer)):  # the VQA LLM is not loaded
        return hit_checker(cfg.verifier, cfg.search, localizer, None)
    attributes, vcfg = _attribute_verifier(args, cfg)
    return hit_checker(vcfg, cfg.search, localizer, attributes)


def _attribute_verifier(args: argparse.Namespace, cfg: Config) -> tuple[Any, Any]:
    """``(AttributeVerifier | None, the verifier section as it is asked)``."""
    from seal.vqa.checker import plan_checker

    plan = plan_checker(cfg, args.verifier_model)
    if plan.path is None:
        print(f"note: no VQA model at {cfg.agent.vqa_path}: the VQA LLM does not check the hits", flush=True)
        return None, plan.config
    from seal.vqa.model import VQAModel
    from seal.vqa.verifier import AttributeVerifier

    vqa = VQAModel.load(plan.path, vwm_config=cfg.vwm)
    return AttributeVerifier.from_config(vqa, cfg, plan.config), plan.config


def default_localizer(args: argparse.Namespace) -> str:
    """``--localizer`` when given; else ``vsm`` when ``--model`` is given or the shipped checkpoint
    exists; else ``oracle`` when ``--annotation`` is given; else an :class:`InputError`."""
    if args.localizer:
        return args.localizer
    if args.model or (DEFAULT_VSM_MODEL / "vsm_config.json").is_file():
        return "vsm"
    if args.annotation:
        return "oracle"
    raise InputError(f"no localizer: the shipped search model {DEFAULT_VSM_MODEL} is missing (train it with "
                     "`seal train vsm --config configs/train/vsm_tiny.yaml`); give --model DIR, or "
                     "--localizer oracle --annotation JSON")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an image for named targets (V* search), print the steps and result")
    p.add_argument("--image", required=True, help="image file (any PIL-readable format; EXIF orientation applied)")
    p.add_argument("--target", action="append", default=[], metavar="NAME",
                   help="target name; repeat for several. Default: every target_object of --annotation")
    p.add_argument("--localizer", choices=sorted(LOCALIZERS),
                   help="model that answers locate / suggest_region (default: vsm when checkpoints/vsm_tiny "
                        "exists, else oracle, which needs --annotation)")
    p.add_argument("--model", metavar="DIR",
                   help="VSM checkpoint directory for --localizer vsm (default: checkpoints/vsm_tiny); its "
                        "search.yaml, if any, sets the search defaults under --config and --search.* overrides")
    p.add_argument("--annotation", metavar="JSON", help="V*Bench per-sample JSON (target_object + bbox)")
    p.add_argument("--verifier-model", metavar="DIR",
                   help="VQA LLM that checks confident hits (verifier section; default: verifier.model_path, else "
                        "the checker agent.vqa_path's verifier.yaml names, checkpoints/vqa_check_tiny, else agent.vqa_path); --verifier.enabled=false turns the check off")
    p.add_argument("--strategy", choices=STRATEGIES, help="expansion order (overrides search.strategy)")
    p.add_argument("--trace-dir", metavar="DIR",
                   help="write trace.json, search_graph.graphml, PNGs, config.yaml and run.json here")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last stdout line")
    p.add_argument("--quiet", action="store_true", help="do not print the per-step lines")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search.image_source import ImageSource
    from search.session import SearchSession

    if args.strategy:
        args.overrides = list(args.overrides or []) + [f"search.strategy={args.strategy}"]
    args.localizer = default_localizer(args)
    # the search model's tuned settings (search.yaml) sit under the user's config files and overrides
    cfg = resolve_config(args, (args.model or DEFAULT_VSM_MODEL) if args.localizer == "vsm" else False)
    localizer = LOCALIZERS[args.localizer](args, cfg)
    truth = _annotated_targets(args, cfg)
    targets = _targets(args, truth)
    image = ImageSource.from_path(args.image, cfg.image.max_pixels)
    session = SearchSession(localizer, image, cfg.search, load_verifier(args, cfg, localizer))

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
        _write_traces(Path(args.trace_dir), image, results, cfg)
        print(f"trace written to {args.trace_dir}", flush=True)
    if args.json:
        print_json_line(records[0] if len(records) == 1 else _combine(records))
    return 0


def format_step(ev: Any) -> str:
    """One line per visited node: order, level, box (full-image xyxy), priority, best score, cue."""
    box = ",".join(f"{v:.0f}" for v in ev.box_xyxy)
    check = f" check {ev.verify_score:.2f}" if ev.verify_score >= 0 else ""
    return (f"  #{ev.visit_order:<3d} L{ev.level} [{box}] prio {ev.priority:.3f} "
            f"score {ev.best_score:.2f} cue {ev.cue:<7s} hmax {ev.heatmap_max:6.2f} queue {ev.queue_size}{check}")


def format_summary(result: Any) -> str:
    if result.found and result.box_xyxy:
        verdict = "found at [" + ",".join(f"{v:.0f}" for v in result.box_xyxy) + "]"
    else:
        verdict = "NOT found"
    return (f"{result.target!r}: {verdict}, score {result.score:.2f}; {result.nodes_visited} nodes, "
            f"{result.model_calls} model calls, {result.seconds:.3f} s (localizer {result.localizer_seconds:.3f} s), "
            + (f"{result.verifier_calls} hit checks ({result.verifier_seconds:.3f} s), " if result.verifier_calls else "")
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
    from search.geometry import iou_xyxy
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
