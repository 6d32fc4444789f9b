"""The command line shared by the research diagnostics that measure benchmark targets
(``vsm_windows``, ``hit_ranking``, ``hit_check_near_misses``, ``contrast``): a model, a V*Bench-layout
folder, the first N targets, torch threads, a report path and the config flags; one error line and
exit code 2 on bad input."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from seal.cli.common import add_config_args


def target_parser(module: str, description: str, model: str, model_help: str, *, n_targets: int, threads: int,
                  out_help: str = "also write the JSON report here", out_required: bool = False,
                  bench_help: str = "TEST-split V*Bench-layout folder",
                  bench: str | None = None) -> argparse.ArgumentParser:
    """A parser for ``python -m research.<module>`` with ``--model`` (default ``model``), ``--bench``
    (required unless ``bench`` gives a default), ``--n-targets``, ``--threads``, ``--out`` (required
    with ``out_required``) and ``--config``; callers add their own."""
    p = argparse.ArgumentParser(prog=f"python -m research.{module}", description=description.splitlines()[0])
    p.add_argument("--model", type=Path, default=Path(model), help=model_help)
    p.add_argument("--bench", type=Path, required=bench is None, default=None if bench is None else Path(bench),
                   help=bench_help)
    p.add_argument("--n-targets", type=int, default=n_targets, help="first N (sample, target) pairs, sorted")
    p.add_argument("--threads", type=int, default=threads, help="torch intra-op threads")
    p.add_argument("--out", type=Path, required=out_required, help=out_help)
    add_config_args(p)
    return p


def add_hit_check_model(parser: argparse.ArgumentParser) -> None:
    """``--hit-check-model DIR``, as in ``seal search``."""
    parser.add_argument("--hit-check-model", metavar="DIR",
                        help="a VQA LLM that also reads the confident boxes' words (sets hit_check.vqa_path and "
                             "hit_check.vqa=always); --hit_check.enabled=false turns the hit check off")


def parse_search_model_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Any]:
    """``(args, config)`` for a diagnostic of the search model ``--model``: the ``seal search`` config
    (:class:`seal.config.SearchCommandConfig`) with ``models.vsm_path`` = ``--model`` (its search
    profile under the ``--config`` files), ``--hit-check-model`` when the parser has it, and the
    dotted overrides.

    Raises:
        ConfigError: a config file or an override is invalid.
    """
    from seal.cli.common import resolve_config
    from seal.cli.main import dotted_overrides
    from seal.config import SearchCommandConfig

    args, extra = parser.parse_known_args(argv)
    args.overrides = dotted_overrides(extra, parser) + ["models.localizer=vsm", f"models.vsm_path={args.model}"]
    if getattr(args, "hit_check_model", None):
        args.overrides += [f"hit_check.vqa_path={args.hit_check_model}", "hit_check.vqa=always"]
    return args, resolve_config(args, SearchCommandConfig)


def command(module: str, argv: list[str] | None) -> list[str]:
    """The command line that produced a report, recorded in it."""
    return ["python", "-m", f"research.{module}", *(argv if argv is not None else sys.argv[1:])]


def write_report(out: Path | None, report: dict[str, Any], indent: int | None = None) -> str:
    """``report`` as JSON (one line when ``indent`` is None), written to ``out`` when given; returned."""
    text = json.dumps(report, indent=indent, default=float)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    return text


def input_error(module: str, exc: Exception) -> int:
    """Print ``<module>: error: <exc>`` on stderr; the exit code of bad input (2)."""
    print(f"{module}: error: {exc}", file=sys.stderr)
    return 2
