"""Replay the COARSE -> FULL escalation over thresholds, from an always_coarse and an always_full run.

    python -m research.escalation_sweep --coarse OUT/always_coarse --full OUT/always_full
        [--thresholds 0,0.1,0.2,0.3,0.4,0.5,0.6,0.8,1.0] [--out sweep.json]

Both folders are ``seal eval`` output folders (``predictions.jsonl``) over the same questions. Per
threshold, every question is answered as the coarse run answered it when its option margin (top-1
minus top-2 of the recorded ``option_scores``) reaches the threshold, else as the full run did,
costing the coarse tokens plus the full tokens: what a policy sending every question to COARSE
(``seal.policy.escalation``) would reach. Prints a markdown table (accuracy overall and per tag,
mean vision tokens, the share escalated) with the always_full reference; choose on a validation split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seal.core.errors import InputError
from seal.policy.escalation import option_margin

DEFAULT_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def run_records(folder: Path) -> dict[str, dict]:
    """The records of the last run in ``folder/predictions.jsonl`` (a folder may hold several
    ``run_id``s), by question id; the file is only read."""
    from eval.results import PREDICTIONS_FILE, last_run, read_predictions

    path = Path(folder) / PREDICTIONS_FILE
    if not path.is_file():
        raise InputError("no predictions.jsonl (run seal eval into this folder first)", path)
    records = last_run(read_predictions(path, repair=False))
    if not records:
        raise InputError("no prediction records", path)
    return {str(r["question_id"]): r for r in records}


def sweep(coarse: dict[str, dict], full: dict[str, dict], thresholds=DEFAULT_THRESHOLDS) -> dict:
    """Per threshold: ``accuracy``, ``avg_cost``, ``escalated`` (share) and ``by_tag`` accuracy."""
    ids = sorted(set(coarse) & set(full))
    if not ids:
        raise InputError("the two runs share no question ids")
    missing = [i for i in ids if coarse[i].get("option_scores") is None]
    if missing:
        raise InputError(f"{len(missing)} coarse records have no option_scores (free-form questions), "
                         f"e.g. {missing[0]}")
    rows = []
    for tau in thresholds:
        hits, costs, escalated, by_tag = [], [], [], {}
        for i in ids:
            c, f = coarse[i], full[i]
            up = option_margin(c["option_scores"]) < tau
            hit = bool(f["correct"] if up else c["correct"])
            hits.append(hit)
            costs.append(float(c["vision_tokens"]) + (float(f["vision_tokens"]) if up else 0.0))
            escalated.append(up)
            by_tag.setdefault(c.get("tag") or "untagged", []).append(hit)
        rows.append({"threshold": tau, "accuracy": sum(hits) / len(ids), "avg_cost": sum(costs) / len(ids),
                     "escalated": sum(escalated) / len(ids),
                     "by_tag": {t: sum(v) / len(v) for t, v in sorted(by_tag.items())}})
    reference = {"accuracy": sum(bool(full[i]["correct"]) for i in ids) / len(ids),
                 "avg_cost": sum(float(full[i]["vision_tokens"]) for i in ids) / len(ids)}
    return {"n": len(ids), "always_full": reference, "rows": rows}


def markdown(result: dict) -> str:
    ref = result["always_full"]
    lines = ["| threshold | accuracy | vision tokens / q | vs always_full | escalated | accuracy by tag |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        tags = ", ".join(f"{t} {v:.2f}" for t, v in r["by_tag"].items())
        ratio = f"{r['avg_cost'] / ref['avg_cost']:.2f}" if ref["avg_cost"] else "-"  # a FULL run without vision
        lines.append(f"| {r['threshold']:g} | {r['accuracy']:.3f} | {r['avg_cost']:.0f} | "
                     f"{ratio} | {r['escalated']:.2f} | {tags} |")
    lines.append(f"| always_full | {ref['accuracy']:.3f} | {ref['avg_cost']:.0f} | 1.00 | - | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.escalation_sweep", description=__doc__.split("\n")[0])
    p.add_argument("--coarse", type=Path, required=True, help="seal eval folder of the always_coarse run")
    p.add_argument("--full", type=Path, required=True, help="seal eval folder of the always_full run")
    p.add_argument("--thresholds", default=",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS))
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = p.parse_args(argv)
    try:
        thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
        result = sweep(run_records(args.coarse), run_records(args.full), thresholds)
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": sys.argv, **result}, indent=1) + "\n", encoding="utf-8")
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
