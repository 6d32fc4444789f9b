"""The experiment matrix (seed 001, B1-B3, G1, H1): every policy over every suite, one table.

Each (suite, policy[, seed]) is one ``seal eval`` run in its own folder ``OUT/<suite>/<policy>[/seed<S>]``
(resumable like any ``seal eval`` folder); the caller passes that run as ``run_eval``, so this module
never imports the CLI. Two policies are derived from others of the same experiment:

- ``random_policy_matched`` draws with the action rates the ``learned`` policy reached on the same
  suite (run first), once per seed; its row is the mean ± std over seeds.
- ``random_bucket_matched`` does the same within three text-pass entropy buckets (cut at the
  learned run's entropy terciles), each bucket with the learned policy's rates in it.
- ``oracle`` is not run: per question, the cheapest action (fewest vision tokens; ties no < coarse <
  full) that answered right in the forced runs ``no_vision`` / ``always_coarse`` / ``always_full``;
  a question none of them answered right takes the cheapest action and counts as wrong.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from eval.metrics import ACTIONS, run_metrics
from eval.results import PREDICTIONS_FILE, SUMMARY_FILE, read_predictions
from seal.core.errors import InputError

POLICIES = ("always_full", "always_coarse", "no_vision", "random_policy_matched", "random_bucket_matched",
            "uncertainty_threshold", "learned", "oracle")
"""Every policy ``seal experiment`` knows, in table order."""
FORCED = {"no": "no_vision", "coarse": "always_coarse", "full": "always_full"}
"""Action short name -> the baseline that always takes it (the oracle's inputs)."""
SEEDED = ("random_policy_matched", "random_bucket_matched")
"""Policies with randomness: run once per seed, reported as mean ± std."""

RunEval = Callable[[Path, Path, list[str]], list[dict]]
"""``(suite_dir, out_dir, config_overrides) -> prediction records of that run`` (one ``seal eval``)."""


def parse_policies(text: str) -> list[str]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown or not names:
        raise InputError(f"--policies: expected a comma list of {', '.join(POLICIES)}, found {text!r}")
    return names


def suite_names(suites: Sequence[Path]) -> list[str]:
    """One folder name per suite: its directory name, ``_2``, ``_3`` ... appended to repeats."""
    names: list[str] = []
    for s in suites:
        base = Path(s).resolve().name or "suite"
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def run_records(out_dir: Path, limit: int | None = None) -> list[dict]:
    """The prediction records of the latest run in a ``seal eval`` folder (its ``summary.json``),
    the first ``limit`` of them when given (a larger earlier limit of the same run wrote more)."""
    summary_path = Path(out_dir) / SUMMARY_FILE
    try:
        latest = json.loads(summary_path.read_text(encoding="utf-8"))["latest"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"expected a seal eval summary with 'latest': {exc}", summary_path) from exc
    records = [r for r in read_predictions(Path(out_dir) / PREDICTIONS_FILE, repair=False) if r.get("run_id") == latest]
    return records if limit is None else records[:limit]


def oracle_records(forced: dict[str, list[dict]]) -> list[dict]:
    """Per question (those answered in all three forced runs, in the ``no`` run's order) the record of
    the cheapest action that answered right, ``oracle_action`` added; none right: the cheapest, wrong.

    Args:
        forced: ``{"no": records, "coarse": records, "full": records}`` of the forced baselines.
    """
    missing = [a for a in ACTIONS if a not in forced]
    if missing:
        raise ValueError(f"oracle: expected the forced runs of {list(ACTIONS)}, missing {missing}")
    by_id = {a: {str(r["question_id"]): r for r in forced[a]} for a in ACTIONS}
    out = []
    for qid in (str(r["question_id"]) for r in forced["no"]):
        if not all(qid in by_id[a] for a in ACTIONS):
            continue
        candidates = [(float(by_id[a][qid]["vision_tokens"]), i, a) for i, a in enumerate(ACTIONS)]
        right = [c for c in candidates if by_id[c[2]][qid]["correct"]]
        action = min(right or candidates)[2]
        out.append({**by_id[action][qid], "action": action, "oracle_action": action})
    if not out:
        raise ValueError("oracle: the forced runs share no question")
    return out


def policy_row(suite: str, policy: str, records: Sequence[dict], seed: int | None = None) -> dict:
    """One main-table row from one run's records (:func:`eval.metrics.run_metrics`)."""
    m = run_metrics(records)
    row = {"suite": suite, "policy": policy, "accuracy": m["accuracy"], "accuracy_ci_low": m["accuracy_ci_low"],
           "accuracy_ci_high": m["accuracy_ci_high"], "mean_vision_tokens": m["avg_cost"],
           **{f"action_rate_{a}": m[f"action_rate_{a}"] for a in ACTIONS}, "n": m["n"]}
    return row if seed is None else {**row, "seed": seed}


def bucket_overrides(learned: Sequence[dict], buckets: int = 3) -> tuple[str, str]:
    """``random_bucket_matched``'s settings from the learned policy's records: entropy thresholds at
    the ``buckets``-quantiles of their text-pass entropies, and per bucket the learned action rates
    (a bucket without questions takes the overall rates)."""
    import numpy as np

    entropy = np.array([float(r["entropy"]) for r in learned if r.get("entropy") is not None])
    if entropy.size == 0:
        raise InputError("random_bucket_matched: the learned run's records carry no text-pass entropy")
    cuts = sorted(set(float(q) for q in np.quantile(entropy, [k / buckets for k in range(1, buckets)])))
    overall = [sum(r["action"] == a for r in learned) / len(learned) for a in ACTIONS]
    ratios = []
    for k in range(len(cuts) + 1):
        inside = [r for r in learned if r.get("entropy") is not None
                  and int(np.searchsorted(cuts, float(r["entropy"]), side="left")) == k]
        ratios.append([sum(r["action"] == a for r in inside) / len(inside) for a in ACTIONS] if inside else overall)
    return f"policy.baseline_bucket_thresholds={cuts}", f"policy.baseline_bucket_ratios={ratios}"


def mean_std(rows: Sequence[dict]) -> dict:
    """Rows of one (suite, policy) over seeds -> one row: every figure the mean, ``accuracy_std`` and
    ``mean_vision_tokens_std`` the sample standard deviation (0 for one seed), ``seeds`` the count."""
    if not rows:
        raise ValueError("mean_std: no rows")
    out = {k: rows[0][k] for k in ("suite", "policy")}
    for key in ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "mean_vision_tokens",
                *(f"action_rate_{a}" for a in ACTIONS)):
        out[key] = statistics.fmean(float(r[key]) for r in rows)
    for key in ("accuracy", "mean_vision_tokens"):
        out[f"{key}_std"] = statistics.stdev(float(r[key]) for r in rows) if len(rows) > 1 else 0.0
    out["n"], out["seeds"] = rows[0]["n"], len(rows)
    return out


def pareto_front(rows: Sequence[dict]) -> list[dict]:
    """The rows no other row dominates (accuracy >= and mean vision tokens <=, one of them strictly),
    by increasing tokens. Compare rows of one suite only; the oracle (an upper reference, not a
    policy one can run) neither joins nor dominates."""
    rows = [r for r in rows if r["policy"] != "oracle"]

    def dominated(r: dict) -> bool:
        return any(o["accuracy"] >= r["accuracy"] and o["mean_vision_tokens"] <= r["mean_vision_tokens"]
                   and (o["accuracy"] > r["accuracy"] or o["mean_vision_tokens"] < r["mean_vision_tokens"])
                   for o in rows)
    return sorted((r for r in rows if not dominated(r)), key=lambda r: (r["mean_vision_tokens"], -r["accuracy"]))


@dataclass
class Sweeps:
    """Extra runs beside the policies (seed 001 A1, B2, F2), each one ``seal eval`` run per value."""

    lambda_heads: Sequence[Path] = ()
    """Policy heads trained with different ``lambda_cost`` (e.g. checkpoints/policy_tiny*): the learned
    policy once per head (``sweep_lambda/<head folder>``)."""
    heads: Sequence[Path] = ()
    """Other trained heads, e.g. the ablations of ``configs/ablations/policy_ablate_*.yaml`` (binary
    actions, soft mixture, hidden features only, lambda 0): the learned policy once per head
    (``sweep_heads/<head folder>``)."""
    thresholds: Sequence[float] = ()
    """``uncertainty_threshold`` once per ``policy.baseline_threshold`` (``sweep_threshold/t<value>``)."""
    pruning_ratios: Sequence[float] = ()
    """The pruning proxy: ``always_full`` with each image keeping this share of its vision tokens, the
    others removed from the model's input (``sweep_pruning/<mode>_r<ratio>``)."""
    pruning_modes: Sequence[str] = ("stride",)
    """How the pruning sweep cuts the tokens: among :data:`PRUNING_MODES` (each with every ratio)."""
    cache_reuse: bool = False
    """Also run the learned policy with ``agent.cache_reuse=false`` (``learned_no_cache_reuse``): same
    answers, the latency the reused KV cache saves."""


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` measured."""

    main_rows: list[dict]
    """One row per (suite, policy) in the policies' order; seeded policies: mean ± std over seeds."""
    seed_rows: list[dict]
    """One row per seeded run."""
    sweep_rows: list[dict]
    """One row per sweep run: a main-table row plus ``sweep`` (lambda | threshold | cache_reuse) and ``value``."""
    records: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    """``(suite, policy or sweep run name) -> prediction records`` (seeded policies: the first seed's)."""


def run_experiment(suites: Sequence[Path], out: Path, policies: Sequence[str], seeds: Sequence[int],
                   run_eval: RunEval, sweeps: Sweeps | None = None,
                   log: Callable[[str], None] = print) -> ExperimentResult:
    """Every policy over every suite, then the sweeps."""
    if not seeds:
        raise InputError("--seeds: expected at least one seed")
    sweeps = sweeps or Sweeps()
    result = ExperimentResult([], [], [])
    for suite_dir, suite in zip(suites, suite_names(suites)):
        runs: dict[str, list[dict]] = {}

        def records(policy: str, extra: tuple[str, ...] = (), sub: str = "", name: str = "") -> list[dict]:
            folder = out / suite / (name or policy) / sub if sub else out / suite / (name or policy)
            overrides = ["policy.baseline_name=null" if policy == "learned" else f"policy.baseline_name={policy}"]
            log(f"[{suite}] {name or policy}{' ' + sub if sub else ''} -> {folder}")
            return run_eval(Path(suite_dir), folder, overrides + list(extra))

        def get(policy: str) -> list[dict]:
            if policy not in runs:
                runs[policy] = records(policy)
            return runs[policy]

        for policy in policies:
            if policy == "oracle":
                recs = oracle_records({a: get(b) for a, b in FORCED.items()})
                row = mean_std([policy_row(suite, policy, recs)])
            elif policy in SEEDED:
                rates = policy_row(suite, "learned", get("learned"))
                ratios = [rates[f"action_rate_{a}"] for a in ACTIONS]
                matched = (f"policy.baseline_target_ratios={ratios}",) if policy == "random_policy_matched" \
                    else bucket_overrides(get("learned"))
                per_seed, recs = [], []
                for s in seeds:
                    got = records(policy, (*matched, f"seed={s}"), f"seed{s}")
                    recs = recs or got
                    per_seed.append(policy_row(suite, policy, got, seed=s))
                result.seed_rows += per_seed
                row = {**mean_std(per_seed), "target_ratios": "/".join(f"{r:.3f}" for r in ratios)}
            else:
                recs = get(policy)
                row = mean_std([policy_row(suite, policy, recs)])
            result.main_rows.append(row)
            result.records[(suite, policy)] = recs
            log(f"[{suite}] {policy}: accuracy {row['accuracy']:.3f}, {row['mean_vision_tokens']:.0f} vision tokens")
        for sweep, name, value, policy, extra in _sweep_runs(sweeps):
            recs = records(policy, extra, name=name)
            result.records[(suite, name.replace("/", ":"))] = recs
            result.sweep_rows.append({**mean_std([policy_row(suite, name.replace("/", ":"), recs)]),
                                      "sweep": sweep, "value": value})
    return result


def head_names(heads: Sequence[Path]) -> list[str]:
    """One name per head folder: its own name, or its parent's when it is a recipe's ``export`` /
    ``head`` folder (``runs/policy_binary/export`` -> ``policy_binary``), ``_2``, ``_3`` ... on repeats."""
    names: list[str] = []
    for h in heads:
        p = Path(h).resolve()
        base = p.parent.name if p.name in ("export", "head") and p.parent.name else p.name
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


PRUNING_MODES = ("stride", "topk_norm", "merger", "pruners", "merger+pruners", "entropy")
"""The token cuts a pruning sweep compares (``vision_budget.pruning_mode``)."""


def pruning_overrides(mode: str, ratio: float) -> tuple[str, ...]:
    """The ``vision_budget`` overrides of one pruning-sweep run: ``ratio`` of each image's tokens kept
    (``stride``, ``topk_norm``), merged into (``merger``), or the entropy cascade's budget mode with
    ``alpha = ratio`` (about that share of the finest grid's tokens)."""
    if mode == "entropy":
        return ("vision_budget.pruning_mode=entropy", "vision_budget.entropy.mode=budget",
                f"vision_budget.entropy.alpha={ratio}")
    return (f"vision_budget.pruning_mode={mode}", f"vision_budget.pruning_ratio={ratio}")


def _sweep_runs(sweeps: Sweeps) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    """``(sweep, run folder, value, policy, overrides)`` of every sweep run."""
    runs = [("lambda", f"sweep_lambda/{name}", name, "learned", (f"policy.checkpoint={h}",))
            for h, name in zip(sweeps.lambda_heads, head_names(sweeps.lambda_heads))]
    runs += [("heads", f"sweep_heads/{name}", name, "learned", (f"policy.checkpoint={h}",))
             for h, name in zip(sweeps.heads, head_names(sweeps.heads))]
    runs += [("threshold", f"sweep_threshold/t{t:g}", f"{t:g}", "uncertainty_threshold",
              (f"policy.baseline_threshold={t}",)) for t in sweeps.thresholds]
    runs += [("pruning", f"sweep_pruning/{m}_r{r:g}", f"{m} {r:g}", "always_full", pruning_overrides(m, r))
             for m in sweeps.pruning_modes for r in sweeps.pruning_ratios]
    if sweeps.cache_reuse:
        runs.append(("cache_reuse", "learned_no_cache_reuse", "false", "learned", ("agent.cache_reuse=false",)))
    return runs
