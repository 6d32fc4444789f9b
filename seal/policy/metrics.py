"""Offline metrics of a policy's actions on precomputed data (no model is run).

Given the action taken for each question of a :class:`~seal.policy.data.PolicyData`, the per-action
correctness and measured costs give the accuracy and cost the pipeline would have reached, so a
lambda sweep or a baseline is evaluated in milliseconds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from seal.policy.actions import ALL_ACTIONS, Action
from seal.policy.calibration import expected_calibration_error
from seal.policy.data import PolicyData


def policy_metrics(actions: np.ndarray, probs: np.ndarray, data: PolicyData, n_bins: int = 15) -> dict:
    """Metrics of taking ``actions`` on ``data``.

    Args:
        actions: (N,) int Action values taken (after any fallback).
        probs: (N, 3) the policy's distribution over (NO, COARSE, FULL); ``probs[n, actions[n]]`` is
            its confidence for the ECE.
        data: the questions' per-action correctness and costs.
    Returns: ``accuracy``, ``avg_cost`` (vision tokens), ``action_rate_{no,coarse,full}``, ``ece``
        (confidence = p(action taken), correct = that action's answer was right) and ``n``.
    """
    actions = np.asarray(actions, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n = len(data)
    if actions.shape != (n,) or probs.shape != (n, len(ALL_ACTIONS)):
        raise ValueError(f"expected actions ({n},) and probs ({n}, 3), found {actions.shape} and {probs.shape}")
    rows = np.arange(n)
    hit = data.correct[rows, actions]
    cost = data.costs[rows, actions].astype(np.float64)
    if not np.all(np.isfinite(cost)):
        raise ValueError("an action was taken whose cost was not measured (NaN in data.costs)")
    out = {"n": n, "accuracy": float(hit.mean()), "avg_cost": float(cost.mean())}
    out.update({f"action_rate_{a.short}": float(np.mean(actions == int(a))) for a in ALL_ACTIONS})
    out["ece"] = expected_calibration_error(np.clip(probs[rows, actions], 0.0, 1.0), hit, n_bins)
    return out


def oracle_actions(data: PolicyData, actions: Sequence[Action] = ALL_ACTIONS) -> np.ndarray:
    """(N,) int64: per question the cheapest action among ``actions`` whose answer was right
    (ties: the earlier action); FULL_VISION (or the last action given) when none was right."""
    cols = np.asarray([int(a) for a in actions], dtype=np.int64)
    costs = data.costs[:, cols].astype(np.float64)  # (N, A)
    ok = data.correct[:, cols]
    masked = np.where(ok, costs, np.inf)
    best = cols[np.argmin(masked, axis=1)]  # argmin keeps the first of ties
    return np.where(ok.any(axis=1), best, cols[-1]).astype(np.int64)
