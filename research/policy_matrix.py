"""The accuracy / cost table of the value-of-vision policies on SynthVStar test suites.

    python -m research.policy_matrix --out runs/policy_matrix [--n 100] [--seed 0] [--limit N]
        [--policies always_full,always_coarse,no_vision,learned] [--config YAML ...] [--field=value ...]

For each suite (``vstar``: small-target questions only; ``mixed``: a third each answerable from the
text, from the coarse view, and needing search) a held-out TEST split of ``--n`` samples is
generated into ``OUT/bench_<suite>`` (reused when present), and ``seal eval`` runs every policy on it
into ``OUT/<suite>/`` (``results.csv``, ``summary_*.json``, ``predictions.jsonl``; re-running
resumes). ``learned`` is the config's learned policy (``agent.default_policy_checkpoint`` or
``policy.checkpoint``); the others are ``policy.baseline_name`` values.

Writes ``OUT/table.md`` and ``OUT/table.json``: per suite and policy the accuracy (with its 95%
bootstrap interval), the action rates, mean vision tokens per question, the ratios to
``always_full`` and, from the per-question records, accuracy per tag and median seconds per action.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

SUITES = ("vstar", "mixed")
POLICIES = ("always_full", "always_coarse", "no_vision", "learned")


def ensure_bench(path: Path, suite: str, n: int, seed: int) -> Path:
    from eval.synth.config import SynthConfig
    from eval.synth.generate import generate_benchmark

    if not (path / "categories.json").is_file() and not (path / "test_questions.jsonl").is_file():
        generate_benchmark(SynthConfig(n=n, seed=seed, split="test", suite=suite), path)
    return path


def run_policy(bench: Path, out: Path, policy: str, extra: list[str], limit: int | None) -> list[dict]:
    """One ``seal eval`` run (in this process); returns its per-question prediction records (of this
    run only: a changed config or revision is a new run in the same folder)."""
    from eval.results import PREDICTIONS_FILE, last_run, read_predictions
    from seal.cli.main import main

    args = ["eval", "--dataset", "synth", "--path", str(bench), "--output-dir", str(out), "--no-progress", *extra]
    if policy != "learned":
        args.append(f"--policy.baseline_name={policy}")
    if limit is not None:
        args += ["--limit", str(limit)]
    if main(args) != 0:
        raise SystemExit(f"seal eval failed for {policy} on {bench}")
    return last_run(read_predictions(out / PREDICTIONS_FILE, repair=False))


def summarize(records: list[dict]) -> dict:
    """:func:`eval.metrics.run_metrics` (accuracy, cost, action rates, ...) plus accuracy per tag and
    median seconds per action (COARSE decisions escalated to FULL under their own key, ``coarse>full``)."""
    from eval.metrics import run_metrics

    metrics = run_metrics(records)
    by_tag: dict[str, list[bool]] = {}
    seconds: dict[str, list[float]] = {}
    for r in records:
        by_tag.setdefault(r.get("tag") or "untagged", []).append(bool(r["correct"]))
        action = "coarse>full" if r.get("escalated") else r["action"]
        seconds.setdefault(action, []).append(float(r["seconds"]))
    return {
        **metrics,
        "action_rates": {a: metrics[f"action_rate_{a}"] for a in ("no", "coarse", "full")},
        "accuracy_by_tag": {t: sum(v) / len(v) for t, v in sorted(by_tag.items())},
        "median_seconds_by_action": {a: statistics.median(v) for a, v in sorted(seconds.items())},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.policy_matrix", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/policy_matrix"))
    p.add_argument("--n", type=int, default=100, help="samples per generated test suite")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int)
    p.add_argument("--suites", default=",".join(SUITES))
    p.add_argument("--policies", default=",".join(POLICIES))
    args, extra = p.parse_known_args(argv)
    table: dict[str, dict[str, dict]] = {}
    for suite in args.suites.split(","):
        bench = ensure_bench(args.out / f"bench_{suite}", suite, args.n, args.seed)
        table[suite] = {}
        for policy in args.policies.split(","):
            out = args.out / suite / policy
            records = run_policy(bench, out, policy, extra, args.limit)
            table[suite][policy] = summarize(records)
            s = table[suite][policy]
            print(f"[{suite}] {policy}: accuracy {s['accuracy']:.3f}, {s['avg_cost']:.0f} vision tokens", flush=True)
        full = table[suite].get("always_full")
        for s in table[suite].values():
            if full:
                s["accuracy_vs_full"] = s["accuracy"] / full["accuracy"] if full["accuracy"] else None
                s["cost_vs_full"] = s["avg_cost"] / full["avg_cost"] if full["avg_cost"] else None
    (args.out / "table.json").write_text(json.dumps({"command": sys.argv, "table": table}, indent=1) + "\n")
    (args.out / "table.md").write_text(markdown(table))
    print(markdown(table))
    return 0


def markdown(table: dict[str, dict[str, dict]]) -> str:
    lines = ["| suite | policy | accuracy | vs always_full | vision tokens / q | vs always_full | no / coarse / full "
             "| accuracy by tag | median s by action |", "|---|---|---|---|---|---|---|---|---|"]
    for suite, rows in table.items():
        for policy, s in rows.items():
            rates = " / ".join(f"{s['action_rates'][a]:.2f}" for a in ("no", "coarse", "full"))
            if s.get("escalation_rate"):
                rates += f" ({s['escalation_rate']:.2f} escalated)"
            tags = ", ".join(f"{t} {v:.2f}" for t, v in s["accuracy_by_tag"].items())
            secs = ", ".join(f"{a} {v:.2f}" for a, v in s["median_seconds_by_action"].items())
            acc_ratio = s.get("accuracy_vs_full")
            cost_ratio = s.get("cost_vs_full")
            lines.append(f"| {suite} | {policy} | {s['accuracy']:.3f} | "
                         f"{'-' if acc_ratio is None else f'{acc_ratio:.2f}'} | {s['avg_cost']:.0f} | "
                         f"{'-' if cost_ratio is None else f'{cost_ratio:.2f}'} | {rates} | {tags} | {secs} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
