"""``seal data``: inspect benchmark files. ``seal data summary`` reads one and counts it.

``seal data summary --dataset vstar|mmbench|hrbench --path P [--json]``

Reads the whole benchmark through :mod:`eval.readers` (so every malformed file, row or field is
reported, as one stderr line and exit code 2) and prints, human-readable or (``--json``) as one
JSON object on the last stdout line:

- ``n_samples``: questions (V*Bench samples; MMBench CircularEval groups; HR-Bench 4-cycle groups);
- ``categories``: category -> number of questions, in first-seen order;
- ``n_targets``: V*Bench folder only, the number of annotated target boxes;
- ``n_rows``: TSV datasets only, the number of data rows (every circular copy / cycle).

For ``vstar``, ``--path`` is a V*Bench folder or a ``test_questions.jsonl``. Images are not decoded.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from seal.cli.common import print_json_line
from seal.core.errors import InputError

DATASETS = ("vstar", "mmbench", "hrbench")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="benchmark files (data summary: count questions per category)")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True
    s = actions.add_parser("summary", help="read a benchmark (V*Bench, MMBench, HR-Bench) and count its questions")
    s.add_argument("--dataset", required=True, choices=DATASETS, help="benchmark format")
    s.add_argument("--path", required=True, metavar="P",
                   help="vstar: folder or test_questions.jsonl; mmbench/hrbench: the .tsv file")
    s.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    s.set_defaults(func=run_summary)


def run_summary(args: argparse.Namespace) -> int:
    if args.overrides:
        raise InputError(f"seal data summary takes no config overrides, found {args.overrides[0]!r}")
    path = Path(args.path)
    if not path.exists():
        raise InputError("no such file or folder", path)
    summary = summarize(args.dataset, path)
    if args.json:
        print_json_line(summary)
    else:
        print(format_summary(summary), flush=True)
    return 0


def summarize(dataset: str, path: Path) -> dict[str, Any]:
    """Counts of one benchmark: see the module docstring for the keys."""
    out: dict[str, Any] = {"dataset": dataset, "path": str(path)}
    if dataset == "vstar":
        from eval.readers.vstar import read_vstar

        samples = read_vstar(path)
        out["format"] = "folder" if path.is_dir() else "jsonl"
        out["n_samples"] = len(samples)
        out["categories"] = dict(Counter(s.category for s in samples))
        if path.is_dir():
            out["n_targets"] = sum(len(s.boxes_xywh) for s in samples)
    elif dataset == "mmbench":
        from eval.readers.mmbench import read_mmbench

        data = read_mmbench(path)
        questions = data.questions()
        out["n_samples"] = len(questions)
        out["categories"] = dict(Counter(q.category for q in questions))
        out["n_rows"] = len(data)
        out["has_answers"] = data.has_answers
    elif dataset == "hrbench":
        from eval.readers.hrbench import read_hrbench

        data = read_hrbench(path)
        out["n_samples"] = len(data.questions)
        out["categories"] = dict(Counter(q.category for q in data.questions))
        out["n_rows"] = len(data)
    else:  # argparse choices make this unreachable from the command line
        raise InputError(f"--dataset: expected one of {list(DATASETS)}, found {dataset!r}")
    return out


def format_summary(summary: dict[str, Any]) -> str:
    head = f"{summary['dataset']}: {summary['n_samples']} questions"
    if "n_rows" in summary:
        head += f" in {summary['n_rows']} rows"
    if "n_targets" in summary:
        head += f", {summary['n_targets']} target boxes"
    lines = [f"{head} ({summary['path']})"]
    width = max((len(c) for c in summary["categories"]), default=0)
    lines += [f"  {c:<{width}}  {n}" for c, n in summary["categories"].items()]
    if summary.get("has_answers") is False:
        lines.append("  (no answer column: test split)")
    return "\n".join(lines)
