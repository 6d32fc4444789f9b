"""Analyses of one experiment's prediction records (seed 001: error slices, calibration, profiling).

Each function takes the records of one ``seal eval`` run (see :mod:`eval.runner`'s
``prediction_record``) and returns flat rows for a CSV:

- :func:`error_slices`: accuracy with its 95% bootstrap interval per (action taken, category);
- :func:`calibration`: per action, the expected calibration error (ECE, 10 equal-width bins) of
  two confidences: the **answer's** (the chosen option's softmax probability over the option scores)
  and the **policy's** (its probability for the action it took; learned policies only), each
  against "the answer was right"; :func:`reliability` gives the diagram's bins;
- :func:`latency`: wall time per question at p50 / p95, overall and per agent stage (the cost
  ledger's ``stage_seconds``: text_pass, policy, global_view, search, answer ...), and peak memory.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from eval.metrics import ACTIONS, bootstrap_ci
from seal.policy.calibration import expected_calibration_error, reliability_bins

ECE_BINS = 10
"""Equal-width confidence bins of every ECE and reliability diagram here."""


def answer_confidence(record: dict) -> float | None:
    """The chosen option's probability: softmax over the record's ``option_scores`` (mean log-likelihoods
    or letter log-probabilities), taken at the chosen index; None without scores or a chosen option."""
    scores, index = record.get("option_scores"), record.get("answer_index")
    if not scores or index is None or not 0 <= int(index) < len(scores):
        return None
    x = np.asarray(scores, dtype=np.float64)
    p = np.exp(x - x.max())
    return float(p[int(index)] / p.sum())


def policy_confidence(record: dict) -> float | None:
    """The policy's probability for the action it took (``probs`` over no / coarse / full; a binary
    head's two probabilities are no / full); None for baselines that give no probabilities."""
    probs, action = record.get("probs"), record.get("action")
    if not probs or action not in ACTIONS:
        return None
    names = ACTIONS if len(probs) == 3 else ("no", "full")
    return float(probs[names.index(action)]) if action in names else None


def error_slices(suite: str, policy: str, records: Sequence[dict]) -> list[dict]:
    """One row per (action, category) that occurs: ``n``, ``accuracy``, ``accuracy_ci_low/high``."""
    rows = []
    for action in ACTIONS:
        taken = [r for r in records if r["action"] == action]
        for category in sorted({r["category"] for r in taken}):
            hits = [bool(r["correct"]) for r in taken if r["category"] == category]
            low, high = bootstrap_ci(hits)
            rows.append({"suite": suite, "policy": policy, "action": action, "category": category, "n": len(hits),
                         "accuracy": sum(hits) / len(hits), "accuracy_ci_low": low, "accuracy_ci_high": high})
    return rows


def calibration(suite: str, policy: str, records: Sequence[dict]) -> list[dict]:
    """Per action taken (and ``all``): ``n``, ``accuracy``, mean and ECE of the answer's and the
    policy's confidence (empty when no record of the slice has that confidence)."""
    rows = []
    for action in (*ACTIONS, "all"):
        taken = [r for r in records if action in ("all", r["action"])]
        if not taken:
            continue
        row: dict = {"suite": suite, "policy": policy, "action": action, "n": len(taken),
                     "accuracy": float(np.mean([bool(r["correct"]) for r in taken]))}
        for name, conf_of in (("answer", answer_confidence), ("policy", policy_confidence)):
            pairs = [(c, bool(r["correct"])) for r in taken if (c := conf_of(r)) is not None]
            if pairs:
                conf, right = zip(*pairs)
                row[f"{name}_confidence"] = float(np.mean(conf))
                row[f"{name}_ece"] = expected_calibration_error(conf, right, ECE_BINS)
        rows.append(row)
    return rows


def reliability(records: Sequence[dict], action: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(confidence, accuracy, count)``, each (ECE_BINS,), of the answers given under ``action``
    (``all``: every record); NaN in empty bins; None when no record has an answer confidence."""
    pairs = [(c, bool(r["correct"])) for r in records
             if action in ("all", r["action"]) and (c := answer_confidence(r)) is not None]
    if not pairs:
        return None
    conf, right = zip(*pairs)
    bins = reliability_bins(conf, right, ECE_BINS)
    return bins.confidence, bins.accuracy, bins.count


def latency(suite: str, policy: str, records: Sequence[dict]) -> dict:
    """``seconds_p50`` / ``seconds_p95`` per question, ``<stage>_p50`` / ``<stage>_p95`` for every stage
    that ran in at least one question (a question that skipped it counts 0 s), ``peak_rss_mb``."""
    row: dict = {"suite": suite, "policy": policy, "n": len(records)}
    total = [float(r["seconds"]) for r in records]
    row["seconds_p50"], row["seconds_p95"] = _percentiles(total)
    stages = sorted({s for r in records for s in (r.get("stage_seconds") or {})})
    for stage in stages:
        row[f"{stage}_p50"], row[f"{stage}_p95"] = _percentiles(
            [float((r.get("stage_seconds") or {}).get(stage, 0.0)) for r in records])
    row["peak_rss_mb"] = max((float(r.get("peak_rss_mb") or 0.0) for r in records), default=0.0)
    return row


def _percentiles(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    p50, p95 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95])
    return float(p50), float(p95)
