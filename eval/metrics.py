"""Evaluation metrics over per-question prediction records (see :mod:`eval.results`).

A prediction record is a dict with at least ``correct`` (bool), ``category`` (str), ``action``
(``"no"`` / ``"coarse"`` / ``"full"``), ``vision_tokens`` (int, every vision token the question
cost), ``seconds`` (wall-clock of ``Agent.ask``), ``peak_rss_mb`` and ``fallback_fired`` (bool).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

ACTIONS = ("no", "coarse", "full")
"""Action short names, in the order of the ``action_rate_*`` columns."""


def bootstrap_ci(correct: Sequence[bool], n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``correct``.

    Args:
        correct: (N,) booleans, one per question (N >= 1).
        n_boot: resamples (with replacement, N each).
        level: coverage, e.g. 0.95 for the 2.5 / 97.5 percentiles.
        seed: resampling seed (same seed, same interval).

    Returns:
        ``(low, high)`` accuracies in [0, 1].
    """
    x = np.asarray(correct, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"correct: expected a non-empty 1-D sequence, found shape {x.shape}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))  # (B, N)
    means = x[idx].mean(axis=1)  # (B,)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def category_column(category: str) -> str:
    """The results.csv column of a category's accuracy: ``acc_<category>`` (non-word chars -> ``_``)."""
    return "acc_" + re.sub(r"\W+", "_", category).strip("_").lower()


def run_metrics(records: Sequence[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """Aggregate metrics of one run.

    Returns a flat dict: ``n``, ``accuracy`` (micro), ``accuracy_ci_low`` / ``accuracy_ci_high``
    (95 % bootstrap), ``action_rate_no|coarse|full``, ``avg_cost`` (mean vision tokens per question),
    ``latency`` (mean s/question), ``latency_p50``, ``latency_p95``, ``mem`` (peak RSS MB over the run),
    ``fallback_rate``, ``escalation_rate`` (COARSE decisions escalated to FULL; their action is
    ``full``) and one ``acc_<category>`` per category (sorted by name).
    """
    if not records:
        raise ValueError("no prediction records to aggregate")
    correct = np.array([bool(r["correct"]) for r in records])
    seconds = np.array([float(r["seconds"]) for r in records])
    out = {"n": len(records), "accuracy": float(correct.mean())}
    out["accuracy_ci_low"], out["accuracy_ci_high"] = bootstrap_ci(correct, n_boot=n_boot, seed=seed)
    actions = [r["action"] for r in records]
    for name in ACTIONS:
        out[f"action_rate_{name}"] = actions.count(name) / len(records)
    out["avg_cost"] = float(np.mean([float(r["vision_tokens"]) for r in records]))
    out["latency"] = float(seconds.mean())
    out["latency_p50"] = float(np.median(seconds))
    out["latency_p95"] = float(np.percentile(seconds, 95))
    out["mem"] = float(max(float(r.get("peak_rss_mb") or 0.0) for r in records))
    out["fallback_rate"] = float(np.mean([bool(r.get("fallback_fired")) for r in records]))
    out["escalation_rate"] = float(np.mean([bool(r.get("escalated")) for r in records]))
    for category in sorted({r["category"] for r in records}):
        hits = [bool(r["correct"]) for r in records if r["category"] == category]
        out[category_column(category)] = sum(hits) / len(hits)
    return out
