"""``seal ask``: answer questions about one image and show the agent's work as it happens.

``seal ask --image IMG --question Q [--options O1 O2 ...] [--json] [--trace-dir D] [--policy P]
[--force-action no|coarse|full] [--localizer vsm|oracle --annotation JSON] [--sample JSON] [--quiet]``

Prints, as it happens: the text pass's uncertainty, the value-of-vision decision and why, the
targets the VQA model says it cannot see, every search step (box, priority, score), the visual
working memory, the answer and its cost. With ``--json`` the last stdout line is one JSON object:
``answer``, ``action``, ``targets``, ``search`` (per target: ``found``, ``box_xyxy`` in full-image
pixels, ``nodes_visited``, ...) and ``cost`` (the ledger), plus the rest of
:meth:`seal.agent.result.AgentResult.to_json`.

Without ``--question`` it is an interactive session about the one image: each input line is a
question, optionally followed by its options after ``|`` (``What colour is the cup? | red | blue``);
an empty line, ``quit`` or end of input ends it. The image's views and the search model's patch
encodings are cached across questions. ``--trace-dir D`` writes one trace directory per question
(``D`` itself for a single question, ``D/q01``, ``D/q02``, ... in a session) with ``index.html``.

``--policy`` takes a baseline name (``always_full``, ``always_coarse``, ``no_vision``, ...) or a
trained policy directory; the default is the config's (the shipped learned policy).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from seal.cli.ask_format import EventPrinter
from seal.cli.common import add_config_args, add_model_args, print_json_line, resolve_config
from seal.core.runs import write_run_record
from seal.core.errors import InputError
from seal.core.outputs import writable_dir, write_errors

QUIT_WORDS = ("quit", "exit", ":q")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help="answer questions about an image, showing the decision, search and cost")
    p.add_argument("--image", required=True, help="image file (any PIL-readable format; EXIF orientation applied)")
    p.add_argument("--question", help="the question; omit for an interactive session about the image")
    p.add_argument("--options", nargs="+", metavar="OPTION", help="multiple-choice options (answer = one of them)")
    p.add_argument("--policy", metavar="NAME|DIR", help="a baseline name or a trained policy directory")
    p.add_argument("--force-action", choices=("no", "coarse", "full"), help="override the policy's action")
    p.add_argument("--localizer", choices=("vsm", "oracle"), help="search localizer (sets models.localizer)")
    p.add_argument("--annotation", metavar="JSON", help="V*Bench per-sample JSON (needed by --localizer oracle)")
    p.add_argument("--sample", metavar="JSON",
                   help="V*Bench per-sample JSON: its question and options (unless given) and its annotation")
    p.add_argument("--trace-dir", metavar="DIR", help="write trace.json, the search graphs, PNGs and index.html here")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on the last stdout line")
    p.add_argument("--quiet", action="store_true", help="no per-step search lines")
    add_model_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def policy_overrides(value: str | None) -> list[str]:
    """``--policy`` as config overrides: a baseline name, or an existing policy directory."""
    from seal.policy.baselines import BASELINES

    if value is None:
        return []
    if value in BASELINES:
        return [f"policy.baseline_name={value}"]
    if Path(value).is_dir():
        return [f"policy.checkpoint={value}"]
    raise InputError(f"--policy: expected a baseline ({', '.join(sorted(BASELINES))}) or a policy directory, "
                     f"found {value!r}")


def parse_line(line: str) -> tuple[str, list[str] | None]:
    """An interactive input line ``question [| option | option ...]`` -> ``(question, options)``."""
    parts = [p.strip() for p in line.split("|")]
    question, options = parts[0], [p for p in parts[1:] if p]
    return question, (options or None)


def run(args: argparse.Namespace) -> int:
    from seal.agent.pipeline import Agent
    from seal.core.image_io import load_image

    args.overrides = list(args.overrides or []) + policy_overrides(args.policy)
    if args.localizer:
        args.overrides.append(f"models.localizer={args.localizer}")
    if args.question is not None and not args.question.strip():
        raise InputError("--question is empty")
    if args.sample:
        _apply_sample(args)
    _check_options(args.options)
    cfg = resolve_config(args)
    if args.trace_dir:
        writable_dir(args.trace_dir, "--trace-dir")  # a bad trace folder fails before any model loads
    image = load_image(args.image, cfg.image.max_pixels)  # a bad image fails before any model loads
    agent = Agent.from_config(cfg)
    agent.set_image(image, args.annotation, path=args.image)
    w, h = agent.views.image.size
    print(f"image      {args.image} ({w}x{h}), policy {agent.policy.name}, localizer {cfg.models.localizer}",
          flush=True)
    printer = EventPrinter(steps=not args.quiet)
    if args.trace_dir:
        with write_errors(args.trace_dir, "--trace-dir"):
            write_run_record(args.trace_dir, cfg)

    if args.question is not None:
        _one(agent, args.question, args.options, args, printer, Path(args.trace_dir) if args.trace_dir else None)
        return 0
    return _session(agent, args, printer, sys.stdin)


def _check_options(options: list[str] | None) -> None:
    """``--options``: each a non-empty string (as the ``options`` of a sample JSON must be)."""
    for i, option in enumerate(options or []):
        if not option.strip():
            raise InputError(f"--options: expected non-empty option strings, found {option!r} as option {i + 1} "
                             f"of {len(options)}")


def _apply_sample(args: argparse.Namespace) -> None:
    """Fill ``--question`` / ``--options`` / ``--annotation`` from ``--sample`` where not given."""
    from eval.readers.vstar import parse_annotation

    path = Path(args.sample)
    if not path.is_file():
        raise InputError("no such sample JSON", path)
    sample = parse_annotation(path, Path(args.image), category=path.parent.name)
    if args.question is None:
        args.question = sample.question
        if args.options is None:
            args.options = list(sample.options)
    if args.annotation is None:
        args.annotation = str(path)


def _one(agent, question: str, options: list[str] | None, args: argparse.Namespace, printer: EventPrinter,
         trace_dir: Path | None) -> dict:
    """Ask one question; print its events, write its trace, print the JSON line when asked."""
    from seal.agent.trace_dir import write_trace_dir

    print(f"question   {question}" + (f"  options: {' | '.join(options)}" if options else ""), flush=True)
    result = agent.ask(question, options, force_action=args.force_action, on_event=printer)
    if trace_dir is not None:
        with write_errors(trace_dir, "--trace-dir"):  # disk full while writing: one line
            page = write_trace_dir(trace_dir, result, agent.views)
        print(f"trace      {page}", flush=True)
    record = result.to_json()
    if args.json:
        print_json_line(record)
    return record


def _session(agent, args: argparse.Namespace, printer: EventPrinter, stdin: TextIO) -> int:
    """Interactive questions about the bound image until an empty line / quit / end of input."""
    interactive = stdin.isatty()
    if interactive:
        print("ask about the image; options after '|' (e.g. 'What colour is the cup? | red | blue'); "
              "empty line or 'quit' ends", flush=True)
    n, total_tokens = 0, 0
    while True:
        if interactive:
            print("? ", end="", flush=True)
        line = stdin.readline()
        if not line or not line.strip() or line.strip().lower() in QUIT_WORDS:
            break
        question, options = parse_line(line)
        if not question:
            print("error: the question is empty", file=sys.stderr, flush=True)
            continue
        if options is None and args.options:
            options = list(args.options)
        n += 1
        trace_dir = Path(args.trace_dir) / f"q{n:02d}" if args.trace_dir else None
        try:
            record = _one(agent, question, options, args, printer, trace_dir)
        except InputError as exc:  # a bad question ends nothing: say so and go on
            print(f"error: {exc}", file=sys.stderr, flush=True)
            continue
        total_tokens += int(record["cost"]["vision_tokens"])
    hits = agent.session.stats().encode_cache_hits  # set_image ran before the session started
    print(f"session    {n} question(s), {total_tokens} vision tokens, {hits} patch encodings served from cache",
          flush=True)
    return 0


__all__ = ["parse_line", "policy_overrides", "register", "run"]
